package stacktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
)

// Proxy is a Toxiproxy proxy in front of one of the stack's servers, made
// for one test and deleted when it ends.
type Proxy struct {
	Name     string
	Endpoint string // the proxied endpoint, same scheme as the upstream's
	api      string
	t        testing.TB
}

// Proxy puts a new Toxiproxy proxy, listening on a free loopback port, in
// front of the endpoint (for example s.S3Endpoint).
func (s *Stack) Proxy(t testing.TB, endpoint string) *Proxy {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatalf("proxy upstream %q: %v", endpoint, err)
	}
	name := unsafeInKey.ReplaceAllString(Prefix(t), "_")
	var created struct{ Listen string }
	p := &Proxy{Name: name, api: s.ToxiproxyURL, t: t}
	p.call(http.MethodPost, "/proxies", map[string]any{
		"name": name, "listen": "127.0.0.1:0", "upstream": u.Host, "enabled": true,
	}, &created)
	t.Cleanup(func() { p.call(http.MethodDelete, "/proxies/"+name, nil, nil) })
	p.Endpoint = u.Scheme + "://" + created.Listen
	return p
}

// SetEnabled turns the proxy on or off; off, it refuses connections and
// drops open ones, like a server that is down.
func (p *Proxy) SetEnabled(on bool) {
	p.t.Helper()
	p.call(http.MethodPost, "/proxies/"+p.Name, map[string]any{"enabled": on}, nil)
}

// AddToxic adds a toxic (see Toxiproxy's documentation for types and
// attributes), for example ("bandwidth", "downstream", {"rate": 1024}).
func (p *Proxy) AddToxic(name, typ, stream string, attributes map[string]any) {
	p.t.Helper()
	p.call(http.MethodPost, "/proxies/"+p.Name+"/toxics", map[string]any{
		"name": name, "type": typ, "stream": stream, "toxicity": 1.0, "attributes": attributes,
	}, nil)
}

// RemoveToxic removes a toxic added with AddToxic.
func (p *Proxy) RemoveToxic(name string) {
	p.t.Helper()
	p.call(http.MethodDelete, "/proxies/"+p.Name+"/toxics/"+name, nil, nil)
}

func (p *Proxy) call(method, path string, body, out any) {
	p.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.api+path, r)
	if err != nil {
		p.t.Fatalf("toxiproxy %s %s: %v", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("toxiproxy %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		p.t.Fatalf("toxiproxy %s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			p.t.Fatalf("toxiproxy %s %s: %v", method, path, fmt.Errorf("decode %q: %w", b, err))
		}
	}
}
