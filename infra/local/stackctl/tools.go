package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The versions of the tools, pinned so that every machine runs the same
// servers. A binary is cached under its version, so a bump rebuilds it.
const (
	// minioVersion is what "go install github.com/minio/minio@latest"
	// resolved to on 2026-11-25; MinIO publishes no tagged Go module versions.
	minioVersion     = "v0.0.0-20260212201848-7aac2a2c5b7c"
	toxiproxyVersion = "v2.12.0" // @latest resolves to an old 2022 release
	rieVersion       = "v0.0.0-20261030222936-bef5c4ba774d"
	versitygwVersion = "v1.8.0"
	// The peers "make bench" compares the agent with.
	rcloneVersion = "v1.76.0"
	s5cmdVersion  = "v2.3.0"
)

// goTool is a command built from the Go module proxy.
type goTool struct {
	name    string // file name in the cache's bin folder, before the version
	pkg     string // package path to go install
	version string
}

var (
	minioTool       = goTool{"minio", "github.com/minio/minio", minioVersion}
	toxiproxyTool   = goTool{"toxiproxy-server", "github.com/Shopify/toxiproxy/v2/cmd/server", toxiproxyVersion}
	toxiproxyCLI    = goTool{"toxiproxy-cli", "github.com/Shopify/toxiproxy/v2/cmd/cli", toxiproxyVersion}
	rieTool         = goTool{"aws-lambda-rie", "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie", rieVersion}
	versitygwTool   = goTool{"versitygw", "github.com/versity/versitygw/cmd/versitygw", versitygwVersion}
	rcloneTool      = goTool{"rclone", "github.com/rclone/rclone", rcloneVersion}
	dynaliteVersion = "4.0.0" // also in infra/local/package.json and its lockfile
)

// tools are the paths of the installed tools.
type tools struct {
	s3Server  string // minio or versitygw
	toxiproxy string
	node      string
	dynalite  string // cli.js
	rclone    string // with --bench-tools
	s5cmd     string // with --bench-tools
}

// install makes sure every tool is in the cache and returns their paths.
// s3Kind picks the S3 server of the stack (minio or versitygw); MinIO is
// always installed, as tests start private MinIO servers of their own.
func install(ctx context.Context, p stackPaths, s3Kind string, bench bool) (tools, error) {
	var t tools
	var err error
	s3 := minioTool
	if s3Kind == "versitygw" {
		s3 = versitygwTool
	}
	for _, g := range []struct {
		tool goTool
		dst  *string
	}{{s3, &t.s3Server}, {minioTool, nil}, {toxiproxyTool, &t.toxiproxy}, {toxiproxyCLI, nil}, {rieTool, nil}} {
		path, err := g.tool.ensure(ctx, p.cache)
		if err != nil {
			return t, err
		}
		if g.dst != nil {
			*g.dst = path
		}
	}
	if t.node, t.dynalite, err = ensureDynalite(ctx, p); err != nil {
		return t, err
	}
	if bench {
		if t.rclone, err = rcloneTool.ensure(ctx, p.cache); err != nil {
			return t, err
		}
		if t.s5cmd, err = ensureS5cmd(ctx, p.cache); err != nil {
			return t, err
		}
	}
	if err := ensureWebServers(ctx); err != nil {
		// Only the web-server tests need lighttpd, nginx and apache2, and
		// they fail loudly without them; the rest of the stack is still useful.
		fmt.Fprintf(os.Stderr, "stack: warning: %v\n", err)
	}
	return t, nil
}

// path is where the tool's binary lives in the cache.
func (g goTool) path(cache string) string {
	return filepath.Join(cache, "bin", g.name+"@"+g.version)
}

// ensure builds the tool with "go install" unless the cache has it.
func (g goTool) ensure(ctx context.Context, cache string) (string, error) {
	dst := g.path(cache)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(cache, "gobin-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(os.Stderr, "stack: building %s@%s from the Go module proxy (first run only; MinIO takes a few minutes)\n", g.pkg, g.version)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "install", g.pkg+"@"+g.version)
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %v\n%s", g.pkg, g.version, err, out)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil || len(entries) != 1 {
		return "", fmt.Errorf("go install %s: want one binary in %s, found %d (%v)", g.pkg, tmp, len(entries), err)
	}
	if err := os.Rename(filepath.Join(tmp, entries[0].Name()), dst); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "stack: built %s in %s\n", g.name, time.Since(start).Round(time.Second))
	return dst, nil
}

// ensureDynalite installs dynalite with npm from the checked-in lockfile.
func ensureDynalite(ctx context.Context, p stackPaths) (node, cli string, err error) {
	node, err = exec.LookPath("node")
	if err != nil {
		return "", "", fmt.Errorf("node is needed for dynalite: %w", err)
	}
	dir := filepath.Join(p.cache, "node")
	cli = filepath.Join(dir, "node_modules", "dynalite", "cli.js")
	src := filepath.Join(p.repo, "infra", "local")
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		return "", "", fmt.Errorf("dynalite lockfile: %w", err)
	}
	installed, _ := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if _, err := os.Stat(cli); err == nil && bytes.Equal(lock, installed) {
		return node, cli, nil
	}
	fmt.Fprintf(os.Stderr, "stack: installing dynalite %s with npm\n", dynaliteVersion)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", "", err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			return "", "", err
		}
	}
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("npm ci (dynalite): %v\n%s", err, out)
	}
	return node, cli, nil
}

// webServerPackages are the Debian packages of the web servers the tests
// run: lighttpd with mod_magnet, nginx with njs (signed links), and Apache
// (apache2-bin, which apache2 pulls in, carries mod_rewrite and mod_lua);
// and acl, whose setfacl docs/install.md's folder permissions for the agent use
// (agent/permissions_test.go runs them); lintian, which judges the
// Debian package (infra/package); and openssl, which checks the CloudFront
// signer's signatures independently of Go (lambda/cdnsign).
var webServerPackages = []string{"lighttpd", "lighttpd-modules-lua", "nginx-light", "libnginx-mod-http-js", "apache2", "acl", "lintian", "openssl"}

// The files that prove a web server is installed with the module its
// fallback needs; the binaries are looked up on PATH.
const (
	modMagnet  = "/usr/lib/lighttpd/mod_magnet.so"
	modNginxJS = "/usr/lib/nginx/modules/ngx_http_js_module.so"
	modRewrite = "/usr/lib/apache2/modules/mod_rewrite.so"
	modLua     = "/usr/lib/apache2/modules/mod_lua.so"
)

// aptLockWait is how long apt-get waits for another apt or dpkg (an
// unattended upgrade, a second "stack install") to let go of its lock
// before it gives up; apt-get's own default is not to wait at all.
const aptLockWait = "300"

// ensureWebServers installs the web servers through apt when one of them
// or its module is missing, without letting the packages start system-wide
// servers.
func ensureWebServers(ctx context.Context) error {
	var missing []string
	for _, bin := range []string{"lighttpd", "nginx", "apache2", "setfacl", "lintian", "openssl"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	for _, mod := range []string{modMagnet, modNginxJS, modRewrite, modLua} {
		if _, err := os.Stat(mod); err != nil {
			missing = append(missing, mod)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("web servers missing (%s) and only root can install them: sudo apt-get install %s",
			strings.Join(missing, ", "), strings.Join(webServerPackages, " "))
	}
	fmt.Fprintf(os.Stderr, "stack: installing %v with apt-get (missing: %s)\n", webServerPackages, strings.Join(missing, ", "))
	// policy-rc.d exiting 101 tells Debian's maintainer scripts not to start
	// the service: a package-started lighttpd, nginx or apache2 would listen
	// on every address.
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); os.IsNotExist(err) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
			return err
		}
		defer os.Remove(policy)
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	lock := []string{"-o", "DPkg::Lock::Timeout=" + aptLockWait}
	for _, args := range [][]string{
		append([]string{"apt-get", "update", "-qq"}, lock...),
		append(append([]string{"apt-get", "install", "-y", "-qq", "--no-install-recommends"}, lock...), webServerPackages...),
	} {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	return nil
}

// ensureS5cmd builds s5cmd into the cache. "go install ...@v2.3.0" fails:
// the module proxy here refuses s5cmd's version list. So the module is
// downloaded by its exact version and built inside a copy of it.
func ensureS5cmd(ctx context.Context, cache string) (string, error) {
	tool := goTool{name: "s5cmd", pkg: "github.com/peak/s5cmd/v2", version: s5cmdVersion}
	dst := tool.path(cache)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	fmt.Fprintf(os.Stderr, "stack: building %s@%s from the Go module proxy (first run only)\n", tool.pkg, tool.version)
	start := time.Now()
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", tool.pkg+"@"+tool.version).Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %v", tool.pkg, tool.version, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download %s: no module folder in %q", tool.pkg, out)
	}
	tmp, err := os.MkdirTemp(cache, "s5cmd-src-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	// The module cache is read-only, and -mod=mod may write go.sum.
	if out, err := exec.CommandContext(ctx, "cp", "-R", mod.Dir+"/.", tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copy %s: %v %s", mod.Dir, err, out)
	}
	exec.Command("chmod", "-R", "u+w", tmp).Run()
	build := exec.CommandContext(ctx, "go", "build", "-mod=mod", "-o", dst+".tmp", ".")
	build.Dir = tmp
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build s5cmd: %v\n%s", err, out)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "stack: built s5cmd in %s\n", time.Since(start).Round(time.Second))
	return dst, nil
}
