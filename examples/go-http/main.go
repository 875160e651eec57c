// A Go net/http server: answers `hello from go` on every path, listening on $PORT
// (8080 when unset); prints `listening on ADDR` once it accepts connections. Built static
// (CGO_ENABLED=0) by `build-image --example go-http`; `bench http --example go-http`
// compares it in Kiln and in a Linux guest.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("hello from go\n"))
	})
	l, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", l.Addr())
	if err := http.Serve(l, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
