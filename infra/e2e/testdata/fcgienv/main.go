// Command fcgienv is a FastCGI back end for TestLighttpdSigningKeyAndSpawnedBackEnds:
// run by the web server on its stdin (a spawned "bin-path" back end), it
// answers every request with the names of the variables in its own process
// environment, one a line, and never their values.
package main

import (
	"fmt"
	"net/http"
	"net/http/fcgi"
	"os"
	"strings"
)

func main() {
	err := fcgi.Serve(nil, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		for _, kv := range os.Environ() {
			name, _, _ := strings.Cut(kv, "=")
			fmt.Fprintln(w, name)
		}
	}))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fcgienv:", err)
		os.Exit(1)
	}
}
