// Command demo runs the whole system for a person, on loopback: it expects
// the local stack's environment (make demo runs it inside
// "infra/local/stack run"), starts the resolver, lighttpd with the fallback
// and the agent, drops a few generated JPEGs into the web root, shows what
// each URL returns as the files move, prints the ledger, and keeps
// everything running until Ctrl-C, when it stops every process it started.
package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/loopback"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

var procs []*exec.Cmd

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer stopAll()
	bucket, table := os.Getenv("OFFLOAD_BUCKET"), os.Getenv("OFFLOAD_TABLE")
	if bucket == "" || table == "" {
		return fmt.Errorf("no local stack in the environment: run it with make demo")
	}
	repo, _ := os.Getwd()
	dir, err := os.MkdirTemp("", "offload-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The hot cache: the agent fills it from what lighttpd's access log
	// shows redirected (step 4).
	static, archive, cache := filepath.Join(dir, "www", "static"), filepath.Join(dir, "archive"), filepath.Join(dir, "cache")
	for _, d := range []string{static, archive, cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	logs := filepath.Join(dir, "logs")
	os.MkdirAll(logs, 0o755)

	resolver, err := loopback.FreeAddr()
	if err != nil {
		return err
	}
	web, err := loopback.FreeAddr()
	if err != nil {
		return err
	}
	if err := startProc(logs, componentEnv("RESOLVER"), filepath.Join(repo, "bin/offload-resolver"), "--listen", resolver, "--log-format", "text"); err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(web)
	conf := filepath.Join(dir, "lighttpd.conf")
	// The access log through a pipe: lighttpd writes a plain log file a
	// second or more late (see docs/web-servers/lighttpd.md, "The access log for the hot cache").
	accessLog := filepath.Join(logs, "lighttpd-access.log")
	os.WriteFile(accessLog, nil, 0o644)
	os.WriteFile(conf, fmt.Appendf(nil, "server.document-root = %q\nserver.bind = \"127.0.0.1\"\nserver.port = %s\nserver.errorlog = %q\nmimetype.assign = ( \".jpg\" => \"image/jpeg\" )\nserver.modules += ( \"mod_accesslog\" )\naccesslog.filename = %q\nvar.offload_lua = %q\nvar.offload_lua_404 = %q\ninclude %q\n",
		filepath.Join(dir, "www"), port, filepath.Join(logs, "lighttpd-error.log"), "|exec cat >>'"+accessLog+"'",
		filepath.Join(repo, "infra/lighttpd/offload-fallback.lua"), filepath.Join(repo, "infra/lighttpd/offload-fallback-404.lua"),
		filepath.Join(repo, "infra/lighttpd/offload.conf")), 0o644)
	if err := startProc(logs, []string{"OFFLOAD_RESOLVER_BASE=http://" + resolver, "OFFLOAD_CACHE_ROOT=" + cache}, "lighttpd", "-D", "-f", conf); err != nil {
		return err
	}
	if err := startProc(logs, componentEnv("AGENT"), filepath.Join(repo, "bin/offload-agent"), "run", "--watch", static, "--archive", archive, "--host", "demo-host",
		"--cache-dir", cache, "--access-log", accessLog); err != nil {
		return err
	}
	for _, a := range []string{resolver, web} {
		if err := loopback.WaitListening(ctx, a, 20*time.Second); err != nil {
			return err
		}
	}

	fmt.Printf(`
offload demo: everything below runs on 127.0.0.1 and stops with Ctrl-C
  web server (lighttpd + Lua fallback)  http://%s/static/
  resolver (offload-resolver)           http://%s
  S3 (MinIO)                            %s  bucket %s
  DynamoDB (dynalite)                   %s  table %s
  agent (offload-agent run)             watches %s
                                        archives to %s
                                        hot cache in %s
  logs                                  %s

`, web, resolver, os.Getenv("AWS_ENDPOINT_URL_S3"), bucket, os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"), table, static, archive, cache, logs)

	names := []string{"sunset.jpg", "2026/holiday/beach.jpg", "portraits/Zoë at the café.jpg"}
	m := offload.DefaultMapping
	var urls []string
	// Written in place, so the agent waits for the quiet period and the
	// first look below finds them on the local disk; a file renamed into
	// place would be gone to S3 within milliseconds.
	fmt.Println("1. The back-end writes three photos into the web root, in place under their names:")
	for i, name := range names {
		data := sampleJPEG(i)
		dst := filepath.Join(static, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return err
		}
		key, _ := m.KeyForFile(name)
		u, _ := m.URLForKey(key)
		urls = append(urls, "http://"+web+u)
		fmt.Printf("   %-58s %s\n", urls[i], describe(ctx, urls[i]))
	}

	fmt.Println("\n2. After the quiet period (2 s; a file renamed into place goes at once) the agent uploads each, verifies, records, archives:")
	for i, name := range names {
		for {
			if _, err := os.Stat(filepath.Join(archive, filepath.FromSlash(name))); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
		}
		time.Sleep(1500 * time.Millisecond) // lighttpd's stat cache lets go of the moved file
		fmt.Printf("   %-58s %s\n", urls[i], describe(ctx, urls[i]))
	}
	fmt.Printf("   %-58s %s\n", "http://"+web+"/static/never-uploaded.jpg", describe(ctx, "http://"+web+"/static/never-uploaded.jpg"))

	fmt.Println("\n3. The ledger (DynamoDB):")
	if err := printLedger(ctx, table, names); err != nil {
		return err
	}

	fmt.Println("\n4. One photo is viewed again and again. The agent counts the redirects in lighttpd's access log; at 3 it\n   fetches the photo into its hot cache (checked against the ledger), and lighttpd serves it again itself:")
	cached := filepath.Join(cache, "static", filepath.FromSlash(names[0]))
	for range 2 { // step 2's look was the first redirect
		fmt.Printf("   %-58s %s\n", urls[0], describe(ctx, urls[0]))
	}
	for deadline := time.Now().Add(15 * time.Second); ; {
		if _, err := os.Stat(cached); err == nil || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	time.Sleep(1500 * time.Millisecond) // lighttpd's stat cache notices the new file
	seen := describe(ctx, urls[0])
	if _, err := os.Stat(cached); err == nil { // the archive holds it too, but lighttpd does not serve that
		seen = strings.Replace(seen, "from the local disk", "from the agent's hot cache", 1)
	}
	fmt.Printf("   %-58s %s\n", urls[0], seen)

	fmt.Printf(`
Try it:
  curl -sIL '%s'
  open %s in a browser
  drop any file into %s and watch it move
Press Ctrl-C to stop everything this demo started.
`, urls[0], urls[1], static)
	<-ctx.Done()
	fmt.Println("\nstopping...")
	return nil
}

// describe follows a URL and says what happened on the way.
func describe(ctx context.Context, url string) string {
	var hops []string
	// A stack over TLS (make test-tls) gives MinIO a certificate of its own
	// CA, which AWS_CA_BUNDLE names; the presigned URLs point there.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if ca := os.Getenv("AWS_CA_BUNDLE"); ca != "" {
		if err := loopback.TrustCA(transport, ca); err != nil {
			return "error: " + err.Error()
		}
	}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second, CheckRedirect: func(r *http.Request, via []*http.Request) error {
		hops = append(hops, "302 → "+r.URL.Host)
		return nil
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	where := "served by lighttpd from the local disk"
	if len(hops) > 0 {
		where = strings.Join(hops, ", ") + " (resolver, then presigned MinIO URL)"
	}
	if resp.StatusCode != http.StatusOK {
		return resp.Status + " from the resolver (" + strings.Join(hops, ", ") + ")"
	}
	return fmt.Sprintf("%s, %d bytes, sha256 %.6x…, %s", resp.Status, len(body), sha256.Sum256(body), where)
}

func printLedger(ctx context.Context, table string, names []string) error {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	db := dynamodb.NewFromConfig(cfg)
	for _, name := range names {
		key, _ := offload.DefaultMapping.KeyForFile(name)
		out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{offload.LedgerPartitionKey: &types.AttributeValueMemberS{Value: key}}})
		if err != nil {
			return err
		}
		rec, err := offload.RecordFromItem(out.Item)
		if err != nil {
			return err
		}
		fmt.Printf("   %-40s %7d bytes  crc64nvme %s  %s  host %s  %s\n", rec.Key, rec.Size, rec.CRC64NVME, rec.ContentType, rec.Host, rec.UploadedAt.Format(time.RFC3339))
	}
	return nil
}

// sampleJPEG draws a small gradient picture, different for each i.
func sampleJPEG(i int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 640, 427))
	for y := 0; y < 427; y++ {
		for x := 0; x < 640; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 255 / 640), uint8(y * 255 / 427), uint8(80 * i), 255})
		}
	}
	var b strings.Builder
	jpeg.Encode(&b, img, &jpeg.Options{Quality: 90})
	return []byte(b.String())
}

// componentEnv gives a component the credentials the stack made for it
// (OFFLOAD_AGENT_AWS_ACCESS_KEY_ID...), restricted to what template.yaml
// grants it, in place of the stack's root credentials.
func componentEnv(component string) []string {
	var env []string
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		if val := os.Getenv("OFFLOAD_" + component + "_" + v); val != "" {
			env = append(env, v+"="+val)
		}
	}
	return env
}

func startProc(logs string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	f, err := os.Create(filepath.Join(logs, filepath.Base(name)+".log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w (run make demo, which builds and installs everything)", name, err)
	}
	procs = append(procs, cmd)
	return nil
}

// stopAll stops every process the demo started, by PID: SIGTERM, then
// SIGKILL after a few seconds.
func stopAll() {
	for _, c := range procs {
		c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range procs {
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			c.Process.Kill()
			<-done
		}
	}
}
