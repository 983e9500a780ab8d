package stacktest

import (
	"net/http"
	"net/url"
	"testing"
)

// TestAWSShimUsesTheStackScheme: the AWS shim, which the components and
// their presigned URLs use, speaks what S3 speaks (https with --tls), and
// HTTPClient reaches both. A plain-HTTP shim once let the TLS suite pass
// without the components ever speaking TLS.
func TestAWSShimUsesTheStackScheme(t *testing.T) {
	t.Parallel()
	st := Require(t)
	s3, err := url.Parse(st.S3Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	shim, err := url.Parse(st.AWSShimEndpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	if shim.Scheme != s3.Scheme {
		t.Errorf("AWS shim %s: scheme %q; want S3's %q (%s)", shim, shim.Scheme, s3.Scheme, s3)
	}
	client := HTTPClient(t)
	for _, endpoint := range []*url.URL{s3, shim} {
		// Unsigned: S3 answers with an error document; a TLS failure is
		// no answer at all.
		resp, err := client.Get(endpoint.String() + "/")
		if err != nil {
			t.Errorf("GET %s with HTTPClient: %v", endpoint, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode >= http.StatusInternalServerError {
			t.Errorf("GET %s: %s", endpoint, resp.Status)
		}
	}
}
