// notls: a Go program that does not link crypto/tls: agtap must leave it alone.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println("hello from", os.Args[0])
}
