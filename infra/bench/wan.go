package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

// latencyProxy is a Toxiproxy proxy in front of one of the stack's servers
// that delays every byte by the same latency in each direction, so each
// round trip (a request and its answer, each step of a TLS handshake)
// costs twice the latency more than on loopback. Toxiproxy works on TCP, so
// TLS passes through untouched, and the proxy listens on 127.0.0.1, which
// the stack's certificate names.
type latencyProxy struct {
	name, api string
	endpoint  string // the upstream's scheme, the proxy's address
}

// newLatencyProxy starts the proxy in the stack's Toxiproxy (TOXIPROXY_URL).
func newLatencyProxy(name, upstream string, latency time.Duration) (*latencyProxy, error) {
	api := os.Getenv("TOXIPROXY_URL")
	if api == "" {
		return nil, fmt.Errorf("TOXIPROXY_URL is not set: run inside infra/local/stack run")
	}
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	p := &latencyProxy{name: name, api: api}
	_ = p.call(http.MethodDelete, "/proxies/"+name, nil, nil) // a killed run's
	var created struct{ Listen string }
	if err := p.call(http.MethodPost, "/proxies", map[string]any{
		"name": name, "listen": "127.0.0.1:0", "upstream": u.Host, "enabled": true,
	}, &created); err != nil {
		return nil, err
	}
	for _, stream := range []string{"upstream", "downstream"} {
		if err := p.call(http.MethodPost, "/proxies/"+name+"/toxics", map[string]any{
			"name": "latency-" + stream, "type": "latency", "stream": stream, "toxicity": 1.0,
			"attributes": map[string]any{"latency": latency.Milliseconds(), "jitter": 0},
		}, nil); err != nil {
			p.close()
			return nil, err
		}
	}
	p.endpoint = u.Scheme + "://" + created.Listen
	return p, nil
}

func (p *latencyProxy) close() { _ = p.call(http.MethodDelete, "/proxies/"+p.name, nil, nil) }

func (p *latencyProxy) call(method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.api+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("toxiproxy %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("toxiproxy %s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("toxiproxy %s %s: decode %q: %w", method, path, b, err)
		}
	}
	return nil
}
