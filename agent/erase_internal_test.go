package agent

import (
	"net/http"
	"strings"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// TestEraseFailureNamesObjectLockAndMFA: AWS refuses to delete a version
// under Object Lock, or on a bucket with MFA delete, with 403
// AccessDenied; erase's report names that cause and what to do, not a
// permission the eraser holds. A plain AccessDenied still names the
// permission.
func TestEraseFailureNamesObjectLockAndMFA(t *testing.T) {
	for _, tt := range []struct {
		message string
		want    []string
	}{
		{"Access Denied because object protected by object lock.", []string{"Object Lock", "retention", "legal hold"}},
		{"Mfa Authentication must be used for this request", []string{"MFA delete", "root user"}},
		{"Access Denied", []string{"missing permission s3:DeleteObjectVersion"}},
	} {
		err := &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 403}},
			Err:      &smithy.GenericAPIError{Code: "AccessDenied", Message: tt.message},
		}
		var r EraseReport
		r.fail(eraseDeleteVersion, "v1", "", err)
		got := r.Failures[0].String()
		for _, want := range tt.want {
			if !strings.Contains(got, want) {
				t.Errorf("%q: failure %q; want it to say %q", tt.message, got, want)
			}
		}
		if len(tt.want) > 1 && strings.Contains(got, "missing permission") {
			t.Errorf("%q: failure %q names a missing permission", tt.message, got)
		}
	}
}
