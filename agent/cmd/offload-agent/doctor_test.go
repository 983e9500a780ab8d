package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/photosleeve/offload/infra/local/stacktest"
	"github.com/photosleeve/offload/infra/local/templatepolicy"
)

// doctorWorld is a first day done right: the folders as init makes them
// (the service user's group, setgid, a default ACL), lighttpd with the
// project's fallback in front of a resolver, and the agent's own
// credentials (only the S3 part of what template.yaml grants it: MinIO
// enforces that; dynalite has no IAM at all, so the DynamoDB grant checks
// can only be seen passing here, and their AccessDeniedException branch
// is never exercised against a real server).
type doctorWorld struct {
	st                   *stacktest.Stack
	bin                  string
	watch, archive       string
	prefix               string
	webURL, resolverBase string
	env                  []string // the agent's credentials, S3 through the AWS shim
}

// serviceUser is the user the folder checks run as: nobody stands in for
// offload, which the package (not this machine) creates.
const serviceUser = "nobody"

func newDoctorWorld(t *testing.T) *doctorWorld {
	t.Helper()
	if os.Geteuid() != 0 {
		stacktest.Unavailable(t, "doctor's folder checks as the service user need root (uid %d)", os.Geteuid())
	}
	st := stacktest.Require(t)
	bins := stacktest.Build(t, "./agent/cmd/offload-agent", "./lambda/cmd/offload-resolver")
	w := &doctorWorld{st: st, bin: bins["offload-agent"], prefix: stacktest.Prefix(t)}
	dir := t.TempDir()
	webroot := filepath.Join(dir, "www")
	w.watch, w.archive = filepath.Join(webroot, "static"), filepath.Join(dir, "archive")
	u, err := user.Lookup(serviceUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, d := range []string{w.watch, w.archive} {
		if err := os.MkdirAll(d, 0o775); err != nil {
			t.Fatal(err)
		}
		os.Chown(d, 0, gid)
		if err := os.Chmod(d, 0o775|os.ModeSetgid); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("setfacl", "-d", "-m", "g:"+u.Gid+":rwX", d).CombinedOutput(); err != nil {
			t.Fatalf("setfacl: %v\n%s", err, out)
		}
	}
	openForSearch(t, w.watch)
	openForSearch(t, w.archive)
	_ = uid

	shim := st.AWSShimEndpoint(t)
	w.env = append(st.Env(t, stacktest.Agent), "AWS_ENDPOINT_URL_S3="+shim)

	// A file the agent offloaded: in the archive, and in the bucket under
	// its key. Through the AWS shim a HEAD of a missing key is 403, as on
	// AWS, so this is what proves s3:GetObject.
	const archived = "2026/first.jpg"
	os.MkdirAll(filepath.Join(w.archive, "2026"), 0o775)
	if err := os.WriteFile(filepath.Join(w.archive, archived), []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := st.S3(t).PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(w.prefix + archived),
		Body: strings.NewReader("original")}); err != nil {
		t.Fatal(err)
	}

	resolverAddr := stacktest.FreeAddr(t)
	stacktest.Start(t, append(st.Env(t, stacktest.Resolver), "AWS_ENDPOINT_URL_S3="+shim), "", bins["offload-resolver"],
		"--listen", resolverAddr, "--key-prefix", w.prefix, "--log-format", "text")
	stacktest.WaitListening(t, resolverAddr)
	w.resolverBase = "http://" + resolverAddr
	webAddr := stacktest.FreeAddr(t)
	stacktest.StartWebServer(t, "lighttpd", webroot, t.TempDir(), webAddr, w.resolverBase)
	w.webURL = "http://" + webAddr + "/static/"
	return w
}

// openForSearch lets other users through the test's 0700 temp folders down
// to dir.
func openForSearch(t *testing.T, dir string) {
	t.Helper()
	tmp := filepath.Clean(os.TempDir())
	for d := filepath.Dir(filepath.Clean(dir)); strings.HasPrefix(d, tmp+string(filepath.Separator)); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
			t.Fatal(err)
		}
	}
}

// args are doctor's flags for the world, with extra ones after (the flag
// package keeps the last of a repeated flag).
func (w *doctorWorld) args(extra ...string) []string {
	return append([]string{"doctor", "--env-file", "none", "--watch", w.watch, "--archive", w.archive, "--bucket", w.st.Bucket,
		"--table", w.st.Table, "--key-prefix", w.prefix, "--user", serviceUser, "--web-url", w.webURL, "--resolver-base", w.resolverBase}, extra...)
}

// doctor runs the binary with the test's environment plus env and returns
// its output and exit status.
func (w *doctorWorld) doctor(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	return runAgent(t, w.bin, env, args...)
}

// line returns the output line of the named check, "" if none.
func line(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[1] == name {
			return l
		}
	}
	return ""
}

// TestDoctorPassesOnAFirstDayDoneRight: every check passes against the
// local stack with the agent's template-limited credentials, folders as
// init makes them, and lighttpd with the project's fallback; exit 0.
// MinIO's STS does not answer GetCallerIdentity (400 InvalidParameterValue
// "Unsupported action GetCallerIdentity"): on a custom endpoint that is a
// skip with the reason, never a failure.
func TestDoctorPassesOnAFirstDayDoneRight(t *testing.T) {
	t.Parallel()
	w := newDoctorWorld(t)
	out, code := w.doctor(t, w.env, w.args()...)
	if code != 0 || strings.Contains(out, "FAIL") {
		t.Fatalf("exit %d; want 0 and no FAIL line:\n%s", code, out)
	}
	id := line(out, "identity")
	if !strings.HasPrefix(id, "skip") || !strings.Contains(id, "custom endpoint") || !strings.Contains(id, "GetCallerIdentity") {
		t.Errorf("identity line %q; want a skip naming the custom endpoint and GetCallerIdentity (MinIO does not answer it)", id)
	}
	for _, name := range []string{"credentials", "region", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
		"s3:ListBucketMultipartUploads", "s3:GetObject", "dynamodb:GetItem", "dynamodb:PutItem", "watch-folder", "archive-folder",
		"rename", "leases", "web-fallback", "resolver", "storage-class"} {
		if l := line(out, name); !strings.HasPrefix(l, "ok") {
			t.Errorf("check %s: %q; want ok", name, l)
		}
	}
	// Nothing left behind: no upload in progress under the probe folder.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ups, err := w.st.S3(t).ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(w.st.Bucket), Prefix: aws.String(w.prefix)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups.Uploads) != 0 {
		t.Errorf("%d multipart uploads left under %s; want none", len(ups.Uploads), w.prefix)
	}
	for _, d := range []string{w.watch, w.archive} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".offload-doctor") {
				t.Errorf("%s left in %s", e.Name(), d)
			}
		}
	}
}

// TestDoctorNamesTheCause: each first-day mistake fails doctor (exit 1)
// with a FAIL line on the check that names it.
func TestDoctorNamesTheCause(t *testing.T) {
	t.Parallel()
	w := newDoctorWorld(t)

	t.Run("no credentials", func(t *testing.T) {
		env := []string{"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "AWS_PROFILE=",
			"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(t.TempDir(), "none"), "AWS_CONFIG_FILE=" + filepath.Join(t.TempDir(), "none"),
			"AWS_EC2_METADATA_DISABLED=true"}
		out, code := w.doctor(t, env, w.args()...)
		wantFail(t, out, code, "credentials", "AWS_ACCESS_KEY_ID")
	})
	t.Run("wrong bucket", func(t *testing.T) {
		out, code := w.doctor(t, w.env, w.args("--bucket", "offload-no-such-bucket")...)
		wantFail(t, out, code, "s3-bucket", "offload-no-such-bucket")
	})

	t.Run("a storage class that needs a restore", func(t *testing.T) {
		out, code := w.doctor(t, append(slices.Clone(w.env), "OFFLOAD_STORAGE_CLASS=GLACIER"), w.args()...)
		wantFail(t, out, code, "storage-class", "must be restored before a GET")
	})
	t.Run("missing grant", func(t *testing.T) {
		// The template's agent policy without s3:PutObject, enforced by a
		// private MinIO (the stack's credentials are fixed at its start).
		m := w.st.StartMinIO(t, "doctor-grants")
		tmpl, err := os.ReadFile(templatepolicy.TemplatePath(stacktest.RepoRoot(t)))
		if err != nil {
			t.Fatal(err)
		}
		less, err := templatepolicy.Without(tmpl, templatepolicy.Agent, "s3:PutObject")
		if err != nil {
			t.Fatal(err)
		}
		doc, err := templatepolicy.S3Policy(less, templatepolicy.Agent, templatepolicy.Target{Bucket: m.Bucket})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := templatepolicy.Assume(ctx, w.st.AWSConfig(t), m.Endpoint, templatepolicy.Agent, doc, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		env := []string{"AWS_ACCESS_KEY_ID=" + c.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + c.SecretAccessKey, "AWS_SESSION_TOKEN=" + c.SessionToken,
			"AWS_ENDPOINT_URL_S3=" + m.Endpoint}
		out, code := w.doctor(t, env, w.args("--bucket", m.Bucket)...)
		wantFail(t, out, code, "s3:PutObject", "AgentPolicyArn")
		if l := line(out, "s3:ListBucketMultipartUploads"); !strings.HasPrefix(l, "ok") {
			t.Errorf("s3:ListBucketMultipartUploads: %q; want ok (only s3:PutObject was taken away)", l)
		}
	})
	t.Run("unwritable archive", func(t *testing.T) {
		archive := filepath.Join(t.TempDir(), "archive")
		if err := os.Mkdir(archive, 0o755); err != nil { // root's, not the service user's
			t.Fatal(err)
		}
		openForSearch(t, archive)
		out, code := w.doctor(t, w.env, w.args("--archive", archive)...)
		wantFail(t, out, code, "archive-folder", "chgrp")
	})
	t.Run("web server without the fallback", func(t *testing.T) {
		// Plain lighttpd serving the web root: a missing file is a 404.
		dir, addr := t.TempDir(), stacktest.FreeAddr(t)
		_, port, _ := strings.Cut(addr, ":")
		conf := filepath.Join(dir, "lighttpd.conf")
		text := fmt.Sprintf("server.document-root = %q\nserver.bind = \"127.0.0.1\"\nserver.port = %s\nserver.errorlog = %q\n",
			filepath.Dir(w.watch), port, filepath.Join(dir, "error.log"))
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		stacktest.Start(t, nil, "", "lighttpd", "-D", "-f", conf)
		stacktest.WaitListening(t, addr)
		out, code := w.doctor(t, w.env, w.args("--web-url", "http://"+addr+"/static/")...)
		wantFail(t, out, code, "web-fallback", "404")
	})
}

// wantFail checks that doctor exited 1 with a FAIL line for the named check
// that mentions want, or whose fix does.
func wantFail(t *testing.T, out string, code int, name, want string) {
	t.Helper()
	if code != 1 {
		t.Errorf("exit %d; want 1", code)
	}
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "FAIL" || f[1] != name {
			continue
		}
		text := l
		if i+1 < len(lines) {
			text += "\n" + lines[i+1]
		}
		if !strings.Contains(text, want) {
			t.Errorf("FAIL %s: %q; want it to mention %q", name, text, want)
		}
		return
	}
	t.Errorf("no FAIL line for %s in:\n%s", name, out)
}
