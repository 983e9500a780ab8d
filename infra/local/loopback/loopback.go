// Package loopback finds free ports on 127.0.0.1 and waits for servers to
// listen there: what the demo, the benchmarks and the tests (through
// stacktest) need to start the project's servers on loopback only.
package loopback

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// FreeAddr returns a "127.0.0.1:PORT" nothing listens on right now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// WaitListening waits until something accepts connections on addr, for at
// most timeout or until ctx ends.
func WaitListening(ctx context.Context, addr string, timeout time.Duration) error {
	var err error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var c net.Conn
		if c, err = net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("nothing listens on %s after %s: %v", addr, timeout, err)
}

// TrustCA makes tr trust the certificates in the PEM file caFile (the
// stack's own CA under --tls, AWS_CA_BUNDLE) and no other.
func TrustCA(tr *http.Transport, caFile string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s: no PEM certificate", caFile)
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return nil
}
