package stacktest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Poller requests every URL it is given in a loop, as a browser would
// (following redirects), and records every answer that is not one of the
// URL's known contents.
type Poller struct {
	rate     int64 // bytes per second it may read; 0 is no limit
	client   *http.Client
	mu       sync.Mutex
	urls     map[string][][32]byte
	order    []string
	failures []PollFailure
	checks   int64
	cancel   context.CancelFunc
	done     chan struct{}
	once     sync.Once
}

// PollFailure is one wrong answer to a request made At and failed by End.
type PollFailure struct {
	At, End time.Time
	URL     string
	Reason  string
}

func (f PollFailure) String() string {
	return f.At.Format("15:04:05.000") + " GET " + f.URL + ": " + f.Reason
}

// NewPoller starts polling with the test's HTTPClient; Stop ends it. A
// rate above zero bounds the bytes per second it reads, so that it does not
// starve what it watches.
func NewPoller(t testing.TB, rate int64) *Poller {
	t.Helper()
	client := HTTPClient(t)
	client.Timeout = 30 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	p := &Poller{rate: rate, client: client, urls: map[string][][32]byte{}, cancel: cancel, done: make(chan struct{})}
	go p.loop(ctx)
	return p
}

func (p *Poller) loop(ctx context.Context) {
	defer close(p.done)
	for ctx.Err() == nil {
		p.mu.Lock()
		urls := append([]string(nil), p.order...)
		p.mu.Unlock()
		for _, u := range urls {
			at := time.Now()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			resp, err := p.client.Do(req)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				p.fail(at, u, err.Error())
				continue
			}
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			resp.Body.Close()
			if ctx.Err() != nil {
				return // stopped in the middle of a body: not an answer
			}
			if p.rate > 0 {
				time.Sleep(time.Duration(n) * time.Second / time.Duration(p.rate))
			}
			switch {
			case err != nil:
				p.fail(at, u, fmt.Sprintf("%s, body cut after %d bytes: %v", resp.Status, n, err))
			case resp.StatusCode != http.StatusOK:
				p.fail(at, u, resp.Status)
			case !p.known(u, [32]byte(h.Sum(nil))):
				p.fail(at, u, fmt.Sprintf("%s with %d bytes that are none of its known contents", resp.Status, n))
			default:
				p.mu.Lock()
				p.checks++
				p.mu.Unlock()
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Add starts polling url, or adds a content it may now answer with (a
// second version of the same name, say).
func (p *Poller) Add(url string, data []byte) { p.AddSum(url, sha256.Sum256(data)) }

// AddSum is Add with the content's SHA-256.
func (p *Poller) AddSum(url string, sum [32]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.urls[url]; !ok {
		p.order = append(p.order, url)
	}
	p.urls[url] = append(p.urls[url], sum)
}

func (p *Poller) known(url string, sum [32]byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.urls[url] {
		if s == sum {
			return true
		}
	}
	return false
}

func (p *Poller) fail(at time.Time, url, reason string) {
	p.mu.Lock()
	p.checks++
	p.failures = append(p.failures, PollFailure{at, time.Now(), url, reason})
	p.mu.Unlock()
	// A refused connection fails in microseconds; a browser would not
	// hammer, and neither does the poller.
	time.Sleep(50 * time.Millisecond)
}

// Stop ends polling and returns how many answers it checked and the wrong
// ones among them.
func (p *Poller) Stop() (int64, []PollFailure) {
	p.once.Do(func() { p.cancel(); <-p.done })
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.checks, p.failures
}
