package stacktest

import (
	"net/http"
	"os"
	"testing"

	"github.com/photosleeve/offload/infra/local/loopback"
)

// HTTPClient returns a new client for requests a test sends as a browser
// would, such as following a presigned URL. When AWS_CA_BUNDLE is set
// ("stack run --tls") it trusts that CA and nothing else, as the SDK does:
// the SDK reads the variable, net/http does not, so http.DefaultClient
// fails on the stack's https endpoints. Its idle connections are closed
// when the test ends.
func HTTPClient(t testing.TB) *http.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the stack is on loopback, whatever the environment says
	if path := os.Getenv("AWS_CA_BUNDLE"); path != "" {
		if err := loopback.TrustCA(tr, path); err != nil {
			t.Fatalf("AWS_CA_BUNDLE: %v", err)
		}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}
