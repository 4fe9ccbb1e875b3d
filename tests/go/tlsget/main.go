// tlsget: the smallest Go program that uses crypto/tls's Conn (through net/http), for the
// locator's unit tests (tests/unit/test_capture_golocate.py). Standard library only.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tlsget https://host:port/path")
		os.Exit(2)
	}
	r, err := http.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer r.Body.Close()
	n, _ := io.Copy(io.Discard, r.Body)
	fmt.Println(r.Status, n)
}
