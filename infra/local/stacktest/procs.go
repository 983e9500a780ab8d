package stacktest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/photosleeve/offload/infra/local/loopback"
)

// RepoRoot returns the repository's root folder: the nearest parent of the
// test's working directory that holds go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's working directory")
		}
		dir = parent
	}
}

// Build builds the project's commands, given as package paths relative to
// the repository root ("./agent/cmd/offload-agent"), into a folder that
// lives as long as the test, and returns each binary's path by its name.
func Build(t testing.TB, pkgs ...string) map[string]string {
	t.Helper()
	bin := t.TempDir()
	args := append([]string{"build", "-o", bin + string(filepath.Separator)}, pkgs...)
	build := exec.Command("go", args...)
	build.Dir = RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", pkgs, err, out)
	}
	paths := map[string]string{}
	for _, p := range pkgs {
		paths[filepath.Base(p)] = filepath.Join(bin, filepath.Base(p))
	}
	return paths
}

// Process is a server or command a test started, stopped by its PID when
// the test ends.
type Process struct {
	Name string
	Log  string // the file its stdout and stderr go to
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs name with args and the test's environment plus env, its
// output appended to logPath (a new file in a temp folder when empty). When
// the test ends it is stopped (SIGTERM, then SIGKILL after 10 s), and if
// the test failed the end of its log is printed.
func Start(t testing.TB, env []string, logPath, name string, args ...string) *Process {
	t.Helper()
	if logPath == "" {
		logPath = filepath.Join(t.TempDir(), filepath.Base(name)+".log")
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{Name: filepath.Base(name), Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		// Its exit status after SIGTERM is its own business (lighttpd's
		// is 1); only having to kill it is worth a line.
		var exit *exec.ExitError
		if err := p.Stop(10 * time.Second); err != nil && !errors.As(err, &exit) {
			t.Logf("stop %s: %v", p.Name, err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("%s log (end):\n%s", p.Name, b)
		}
	})
	return p
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM, waits up to grace, then kills. It returns the
// process's own error (nil for exit status 0), and nothing if it had
// already ended.
func (p *Process) Stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.Name, grace)
	}
}

// WaitListening waits until something accepts connections on addr.
func WaitListening(t testing.TB, addr string) {
	t.Helper()
	if err := loopback.WaitListening(context.Background(), addr, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

// Site is the web site's own configuration around the fallback, as an
// operator would have it: Before goes into the nginx server block or the
// Apache virtual host ahead of the project's include, After behind it; for
// lighttpd, whose include is global, they go into the global configuration.
//
// AccessLog, when set, is a file the server writes its access log to, one
// line per request in its usual format: lighttpd's default (mod_accesslog,
// "%h %V %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\""), nginx's and
// Apache's "combined". Each line is in the file as soon as the response is
// sent. nginx (no buffer=) and Apache (BufferedLogs off, the default) write
// it then anyway; lighttpd 1.4.69 holds lines in memory until the next
// second's first request, 8 KiB, or its flush every 4 s, so its log goes
// through a pipe to cat ("|exec cat >>FILE"), which lighttpd writes at
// once.
//
// SigningKey, when set, turns signed links on (docs/signed-links.md, "Turn them
// on"): the server gets the key as OFFLOAD_SIGNING_KEY in its
// environment and the project's signing configuration, so that every
// request under /static/ needs a valid link. SigningScript, when set with
// it, is the signing script the server runs instead of the project's
// (infra/nginx/offload-signing.js, infra/apache/offload-signing.lua,
// lighttpd's offload-fallback.lua, which holds its check): a copy with a
// fault injected, to see what the server does when the check fails.
type Site struct{ Before, After, AccessLog, SigningKey, SigningScript string }

// nginxJSModule is njs's module from Debian's libnginx-mod-http-js, which
// nginx's signed-link check needs.
const nginxJSModule = "/usr/lib/nginx/modules/ngx_http_js_module.so"

// apacheModules are the shared modules the Apache configuration loads from
// Debian's apache2-bin; log_config (with logio, for combined's %O) and unixd
// are built into its binary.
var apacheModules = []string{"mpm_event", "authz_core", "rewrite", "mime", "dir"}

// apacheCombined is Debian's apache2.conf definition of the "combined"
// format, which the minimal configuration below does not read.
const apacheCombined = `LogFormat "%h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\"" combined`

// StartWebServer starts lighttpd, nginx or apache2 (Debian's) on addr
// serving webroot with the project's fallback configuration (infra/lighttpd,
// infra/nginx, infra/apache): a file missing from webroot is served from
// cacheRoot (the agent's hot cache) if it is there, else redirected to
// resolverBase. It checks that configuration first and waits until the
// server listens. At most one site may be given.
//
// Apache will not run its workers as root, so when the test runs as root
// its workers are www-data and the folders above webroot and cacheRoot
// inside the temp folder (t.TempDir() makes them 0700) are opened to others
// for search.
func StartWebServer(t testing.TB, server, webroot, cacheRoot, addr, resolverBase string, site ...Site) *Process {
	t.Helper()
	if _, err := exec.LookPath(server); err != nil {
		t.Fatalf("%s is part of the stack (infra/local/stack install puts it there): %v", server, err)
	}
	var s Site
	switch {
	case len(site) > 1:
		t.Fatalf("StartWebServer: %d sites; want at most one", len(site))
	case len(site) == 1:
		s = site[0]
	}
	repo, dir := RepoRoot(t), t.TempDir()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, server+".conf")
	var env, check, run []string
	var text []byte
	switch server {
	case "lighttpd":
		var accessLog, signing string
		if s.SigningKey != "" {
			signing = fmt.Sprintf("include %q\n", filepath.Join(repo, "infra/lighttpd/offload-signing.conf"))
		}
		fallbackLua := filepath.Join(repo, "infra/lighttpd/offload-fallback.lua")
		if s.SigningKey != "" && s.SigningScript != "" {
			fallbackLua = s.SigningScript
		}
		if s.AccessLog != "" {
			accessLog = fmt.Sprintf("server.modules += ( \"mod_accesslog\" )\naccesslog.filename = %q\n",
				"|exec cat >>"+shellQuote(s.AccessLog))
		}
		text = fmt.Appendf(nil, `server.document-root = %q
server.bind = "127.0.0.1"
server.port = %s
server.errorlog = %q
%s%s
var.offload_lua = %q
var.offload_lua_404 = %q
include %q
%s%s
`, webroot, port, filepath.Join(dir, "lighttpd-error.log"), accessLog, s.Before,
			fallbackLua, filepath.Join(repo, "infra/lighttpd/offload-fallback-404.lua"),
			filepath.Join(repo, "infra/lighttpd/offload.conf"), signing, s.After)
		env = []string{"OFFLOAD_RESOLVER_BASE=" + resolverBase, "OFFLOAD_CACHE_ROOT=" + cacheRoot}
		check, run = []string{"-tt", "-f", conf}, []string{"-D", "-f", conf}
	case "nginx":
		// Workers run as root here so they can read the test's 0700 temp folders.
		var accessLog, signingMain, signing string
		if s.AccessLog != "" {
			accessLog = fmt.Sprintf("access_log %q combined;", s.AccessLog)
		}
		if s.SigningKey != "" {
			signingMain = fmt.Sprintf("load_module %q;\nenv OFFLOAD_SIGNING_KEY;", nginxJSModule)
			script := filepath.Join(repo, "infra/nginx/offload-signing.js")
			if s.SigningScript != "" {
				script = s.SigningScript
			}
			signing = fmt.Sprintf("js_import offload_signing from %q;\n        include %q;",
				script, filepath.Join(repo, "infra/nginx/offload-signing.conf"))
		}
		text = fmt.Appendf(nil, `%[10]s
user root;
daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log;
events {}
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen 127.0.0.1:%[2]s;
        root %[3]q;
        %[9]s
        set $offload_resolver_base %[4]q;
        set $offload_cache_root %[8]q;
%[6]s
        %[11]s
        include %[5]q;
%[7]s
    }
}
`, dir, port, webroot, resolverBase, filepath.Join(repo, "infra/nginx/offload.conf"), s.Before, s.After, cacheRoot, accessLog,
			signingMain, signing)
		check, run = []string{"-t", "-c", conf}, []string{"-c", conf}
	case "apache2":
		var user string
		if os.Geteuid() == 0 {
			user = "User www-data\nGroup www-data\n"
			openToWorkers(t, webroot)
			openToWorkers(t, cacheRoot)
		}
		var accessLog string
		if s.AccessLog != "" {
			accessLog = fmt.Sprintf("CustomLog %q combined", s.AccessLog)
		}
		var modules []byte
		mods, signing := apacheModules, ""
		if s.SigningKey != "" {
			mods = append(mods[:len(mods):len(mods)], "lua")
			script := filepath.Join(repo, "infra/apache/offload-signing.lua")
			if s.SigningScript != "" {
				script = s.SigningScript
			}
			signing = fmt.Sprintf("Define OFFLOAD_SIGNING_LUA %s", script)
		}
		for _, m := range mods {
			modules = fmt.Appendf(modules, "LoadModule %s_module /usr/lib/apache2/modules/mod_%[1]s.so\n", m)
		}
		// -X: one process (event MPM threads serve many connections at
		// once), in the foreground, so Start's SIGTERM by PID stops all of
		// it. Its error log is Start's log, printed when the test fails.
		// The filesystem is closed to the server as in Debian's
		// apache2.conf, so only what the site and the include open is
		// served.
		text = fmt.Appendf(nil, `ServerRoot %[1]q
DefaultRuntimeDir %[1]q
PidFile %[10]q
ErrorLog /dev/stderr
LogLevel warn
%[13]s
%[2]s%[3]sServerName 127.0.0.1
Listen 127.0.0.1:%[4]s
TypesConfig /etc/mime.types
<Directory />
    Require all denied
</Directory>
<VirtualHost 127.0.0.1:%[4]s>
    DocumentRoot %[5]q
    <Directory %[5]q>
        Require all granted
    </Directory>
    %[12]s
    Define OFFLOAD_RESOLVER_BASE %[6]s
    Define OFFLOAD_CACHE_ROOT %[11]s
    %[14]s
%[8]s
    Include %[7]q
%[9]s
</VirtualHost>
`, dir, modules, user, port, webroot, resolverBase, filepath.Join(repo, "infra/apache/offload.conf"), s.Before, s.After,
			filepath.Join(dir, "apache2.pid"), cacheRoot, accessLog, apacheCombined, signing)
		check, run = []string{"-t", "-f", conf}, []string{"-X", "-f", conf}
	default:
		t.Fatalf("unknown web server %q", server)
	}
	if s.SigningKey != "" {
		env = append(env, "OFFLOAD_SIGNING_KEY="+s.SigningKey)
	}
	if err := os.WriteFile(conf, text, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(server, check...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", server, check, err, out)
	}
	p := Start(t, env, "", server, run...)
	WaitListening(t, addr)
	return p
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// openToWorkers lets an unprivileged web server worker reach webroot: it
// adds search permission for others to webroot and each folder above it
// up to the system's temp folder, and read permission to webroot itself.
// Folders outside the temp folder are left alone.
func openToWorkers(t testing.TB, webroot string) {
	t.Helper()
	tmp := filepath.Clean(os.TempDir())
	mode := os.FileMode(0o005) // webroot: read and search
	for d := filepath.Clean(webroot); strings.HasPrefix(d, tmp+string(filepath.Separator)); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, fi.Mode().Perm()|mode); err != nil {
			t.Fatal(err)
		}
		mode = 0o001 // above it: search only
	}
}
