package doctor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Web checks the web server's answer for a missing original and the
// resolver's answer for where it sends it.
type Web struct {
	// URL is the web server's URL of the watch folder, e.g.
	// http://127.0.0.1/static/ (a trailing slash is added if missing).
	URL string
	// ResolverBase is OFFLOAD_RESOLVER_BASE: the resolver's base URL, no
	// trailing slash, which the web server redirects to.
	ResolverBase string
	Client       *http.Client // nil: one that follows no redirect
}

// Check requests a name that cannot exist: the web server should answer
// 302 to ResolverBase + the path, and the resolver, asked for it, should
// answer itself (404 or 403: no such original), not fail to answer.
func (w Web) Check(ctx context.Context) []Result {
	if w.URL == "" {
		return []Result{skip("web-fallback", "no --web-url (OFFLOAD_WEB_URL) given: e.g. --web-url http://127.0.0.1/static/"),
			skip("resolver", "no --web-url")}
	}
	c := w.Client
	if c == nil {
		c = &http.Client{}
	}
	noFollow := *c
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	u := strings.TrimSuffix(w.URL, "/") + "/offload-doctor-" + probeName() + ".jpg"
	resp, err := get(ctx, &noFollow, u)
	fix := "enable the fallback: lighty-enable-mod offload (package lighttpd-modules-lua for mod_magnet) and OFFLOAD_RESOLVER_BASE in lighttpd's environment (offload-agent init writes the drop-in), then restart lighttpd"
	if err != nil {
		return []Result{fail("web-fallback", "start the web server, or correct --web-url", "GET %s: %v", u, err), skip("resolver", "no redirect to follow")}
	}
	loc := resp.Header.Get("Location")
	switch {
	case resp.StatusCode != http.StatusFound:
		return []Result{fail("web-fallback", fix, "GET %s answered %s; want 302 to the resolver", u, resp.Status), skip("resolver", "no redirect to follow")}
	case w.ResolverBase != "" && !strings.HasPrefix(loc, w.ResolverBase+"/"):
		return []Result{fail("web-fallback", "set the web server's OFFLOAD_RESOLVER_BASE to the stack's ResolverBase output (the agent's env file has it)",
			"GET %s: 302 to %q, not under OFFLOAD_RESOLVER_BASE %q", u, loc, w.ResolverBase), skip("resolver", "redirect elsewhere")}
	}
	out := []Result{ok("web-fallback", "missing original → 302 %s", loc)}
	if w.ResolverBase == "" {
		out[0].Detail += " (OFFLOAD_RESOLVER_BASE not given: not compared)"
	}
	resp, err = get(ctx, &noFollow, loc)
	if err != nil {
		return append(out, fail("resolver", "check the resolver's URL (the stack's ResolverBase output) and that the host reaches it", "GET %s: %v", loc, err))
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden:
		return append(out, ok("resolver", "answers %s for a missing original", resp.Status))
	case resp.StatusCode >= 500:
		return append(out, fail("resolver", "read the resolver's logs (CloudWatch, /aws/lambda/...): its settings or grants", "GET %s answered %s", loc, resp.Status))
	default:
		return append(out, fail("resolver", "check that OFFLOAD_RESOLVER_BASE is the resolver's URL", "GET %s answered %s for a missing original; want 404 or 403", loc, resp.Status))
	}
}

func get(ctx context.Context, c *http.Client, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("bad URL: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	return resp, nil
}
