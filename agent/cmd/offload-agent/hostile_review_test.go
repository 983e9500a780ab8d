package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/photosleeve/offload/agent"
	"github.com/photosleeve/offload/infra/local/stacktest"
)

// A local user who can write in the watch folder (the web back-end's user,
// a member of group offload) plants a symbolic link where doctor, as root,
// makes its "foreign" file for the lease check: doctor must neither
// truncate nor chown the file the link points to.
func TestDoctorForeignFileFollowsNoPlantedLink(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("OFFLOAD_REQUIRE_STACK") != "" {
			t.Fatal("needs root")
		}
		t.Skip("needs root")
	}
	watch := t.TempDir()
	victim := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(victim, []byte("secret"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(victim, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	// The name doctor used: predictable from its process id.
	link := filepath.Join(watch, ".offload-doctor-foreign-"+strconv.Itoa(os.Getpid()))
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	// A cancelled context: the child is never started; the foreign file is
	// made before it would be.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	folderChecks(ctx, "nobody", watch, "")

	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(victim, &st); err != nil {
		t.Fatal(err)
	}
	if string(b) != "secret" || st.Uid != 65534 {
		t.Fatalf("doctor followed a planted link: the file it points to now holds %q, owner uid %d (want %q, uid 65534)", b, st.Uid, "secret")
	}
	if _, err := os.Lstat(link); err != nil {
		t.Errorf("the planted link: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(watch, ".offload-doctor-foreign-*"))
	if len(left) != 1 {
		t.Errorf("doctor left files behind in the watch folder: %v", left)
	}
}

// A file name is chosen by whoever writes in the watch folder (a local
// user, or a web site's visitor where the back-end keeps upload names); a
// name with control characters is refused, and the refusal is listed by
// "offload-agent status", which root runs in a terminal: the name must
// not reach the terminal as escape sequences (clear the screen, retitle
// the window, hide the lines after it).
func TestPrintStatusEscapesControlCharacters(t *testing.T) {
	now := time.Now()
	evil := "a\x1b[2J\x1b]0;owned\x07\u009b31mb.jpg"
	st := agent.Status{Now: now, Started: now, Pending: 1,
		Waiting:        []agent.Waiting{{Path: evil, Since: now, State: "quiet"}},
		InFlight:       []agent.InFlight{{Path: evil}},
		RecentFailures: []agent.Failure{{Path: evil, At: now, Cause: "refused", Error: "invalid path: control character U+001B in " + strconv.Quote(evil)}}}
	var b strings.Builder
	printStatus(&b, st)
	if i := strings.IndexFunc(b.String(), func(r rune) bool { return r != '\n' && unicode.IsControl(r) }); i >= 0 {
		t.Fatalf("status printed a control character %U from a file name:\n%q", []rune(b.String()[i:])[0], b.String())
	}
}

// doctor as root checks the credentials the service would have: the unit
// runs the agent as the service user (HOME its home, /nonexistent), with
// ProtectHome=yes, so root's own ~/.aws (where "aws configure" put the
// keys that ran sam deploy and describe-stacks) is none of the agent's.
// doctor must not pass "credentials" on root's.
func TestDoctorAsRootChecksNotRootsOwnCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".aws"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".aws", "credentials"),
		[]byte("[default]\naws_access_key_id = AKIAROOTSOWNKEY91234\naws_secret_access_key = rootsecret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(t.TempDir(), "agent.env")
	vars := map[string]string{"OFFLOAD_BUCKET": "offload-bucket", "OFFLOAD_TABLE": "offload-ledger", "AWS_REGION": "eu-west-1",
		"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_EC2_METADATA_DISABLED": "true"}
	var lines string
	for k, v := range vars {
		lines += k + "=" + v + "\n"
	}
	if err := os.WriteFile(envFile, []byte(lines), 0o640); err != nil {
		t.Fatal(err)
	}
	// A process of its own: the SDK fixes ~/.aws's file names from HOME
	// when it is loaded. sudo's environment: HOME=/root, PATH, nothing of AWS.
	bin := stacktest.Build(t, "./agent/cmd/offload-agent")["offload-agent"]
	cmd := exec.Command(bin, "doctor", "--env-file", envFile, "--user", "nobody")
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	out, _ := cmd.CombinedOutput()
	if l := line(string(out), "credentials"); strings.Contains(l, "1234") {
		t.Fatalf("doctor as root passed the service's credentials on root's own ~/.aws:\n%s", out)
	}
}
