// notls: a Go program that does not link crypto/tls: agtap must leave it alone.
// `notls SECONDS` stays alive that long (for the tests that look at running programs).
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	fmt.Println("hello from", os.Args[0])
	if len(os.Args) > 1 {
		if s, err := strconv.Atoi(os.Args[1]); err == nil {
			time.Sleep(time.Duration(s) * time.Second)
		}
	}
}
