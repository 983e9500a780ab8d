package agent

import "testing"

// TestCredentialRefusalsAreServiceWide: a refusal of the credentials, which
// stops run and once at start, is one the breaker also takes for the
// service's (blame.go), never a file's.
func TestCredentialRefusalsAreServiceWide(t *testing.T) {
	for code := range credentialRefusals {
		if !serviceWide[code] {
			t.Errorf("%s refuses the credentials but is not in serviceWide", code)
		}
	}
}
