package stacktest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// StartSecretsManager starts the Secrets Manager stand-in ("stackctl
// secrets-manager", infra/local/stackctl/secrets.go) on loopback, serving
// secrets (id → SecretString) to the access keys in allow, and returns its
// endpoint, for AWS_ENDPOINT_URL_SECRETS_MANAGER. It is stopped by its PID
// when the test ends.
func StartSecretsManager(t testing.TB, secrets map[string]string, allow ...string) string {
	t.Helper()
	bin := Build(t, "./infra/local/stackctl")["stackctl"]
	dir := t.TempDir()
	addr := FreeAddr(t)
	args := []string{"secrets-manager", "--listen", addr, "--allow", strings.Join(allow, ",")}
	i := 0
	for id, value := range secrets {
		f := filepath.Join(dir, "secret-"+strconv.Itoa(i))
		i++
		if err := os.WriteFile(f, []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--secret", id+"="+f)
	}
	Start(t, nil, "", bin, args...)
	WaitListening(t, addr)
	return "http://" + addr
}
