package hotcache

import (
	"strings"
	"testing"
	"time"
)

// parseCases are lines as each server writes them in its default format
// (lighttpd's "%h %V %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\"",
// nginx's and Apache's combined, the Common Log Format), with the escapes
// each applies inside the request line.
var parseCases = []struct {
	name string
	line string
	want Request
}{
	{
		name: "CLF, Apache's example",
		line: `127.0.0.1 user-identifier frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326`,
		want: Request{Method: "GET", Target: "/apache_pb.gif", Status: 200, Time: time.Date(2000, 10, 10, 20, 55, 36, 0, time.UTC)},
	},
	{
		name: "Apache combined, brackets in the user agent",
		line: `192.0.2.10 - frank [10/Oct/2000:13:55:36 -0700] "GET /static/a%20b+c.jpg?x=%3F HTTP/1.1" 206 1024 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"`,
		want: Request{Method: "GET", Target: "/static/a%20b+c.jpg?x=%3F", Status: 206, Time: time.Date(2000, 10, 10, 20, 55, 36, 0, time.UTC)},
	},
	{
		name: `Apache escapes a quote as \" and a backslash as \\`,
		line: `192.0.2.10 - - [12/Mar/2025:06:25:14 +0000] "GET /static/say\"hi\"\\x.jpg HTTP/1.1" 404 196 "-" "curl/8.5.0"`,
		want: Request{Method: "GET", Target: `/static/say"hi"\x.jpg`, Status: 404, Time: time.Date(2025, 3, 12, 6, 25, 14, 0, time.UTC)},
	},
	{
		name: `Apache escapes non-ASCII as lower-case \xhh`,
		line: `192.0.2.10 - - [12/Mar/2025:06:25:14 +0000] "GET /static/\xe5\xb7\xa5.jpg HTTP/1.1" 200 5 "-" "-"`,
		want: Request{Method: "GET", Target: "/static/\xe5\xb7\xa5.jpg", Status: 200, Time: time.Date(2025, 3, 12, 6, 25, 14, 0, time.UTC)},
	},
	{
		name: "Apache, user name with an escaped quote before the time",
		line: `192.0.2.10 - bob\"x [12/Mar/2025:06:25:14 +0000] "GET /static/a.jpg HTTP/1.1" 403 199 "-" "-"`,
		want: Request{Method: "GET", Target: "/static/a.jpg", Status: 403, Time: time.Date(2025, 3, 12, 6, 25, 14, 0, time.UTC)},
	},
	{
		name: "nginx combined",
		line: `203.0.113.7 - - [12/Mar/2025:06:25:14 +0100] "GET /static/2024/05/IMG_0042.jpg HTTP/2.0" 302 145 "https://example.com/gallery/" "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"`,
		want: Request{Method: "GET", Target: "/static/2024/05/IMG_0042.jpg", Status: 302, Time: time.Date(2025, 3, 12, 5, 25, 14, 0, time.UTC)},
	},
	{
		name: `nginx escapes a quote, a backslash and non-ASCII as upper-case \xHH`,
		line: `203.0.113.7 - - [12/Mar/2025:06:25:14 +0000] "GET /static/\xE5\xB7\xA5\x22q\x5C.jpg?x=%3F HTTP/1.1" 200 48213 "-" "-"`,
		want: Request{Method: "GET", Target: "/static/\xe5\xb7\xa5\"q\\.jpg?x=%3F", Status: 200, Time: time.Date(2025, 3, 12, 6, 25, 14, 0, time.UTC)},
	},
	{
		name: "nginx escape=none leaves a quote raw",
		line: `203.0.113.7 - - [12/Mar/2025:06:25:14 +0000] "GET /static/a"b.jpg HTTP/1.1" 200 3 "-" "-"`,
		want: Request{Method: "GET", Target: `/static/a"b.jpg`, Status: 200, Time: time.Date(2025, 3, 12, 6, 25, 14, 0, time.UTC)},
	},
	{
		name: "nginx, absolute-form target",
		line: `203.0.113.7 - - [12/Mar/2025:06:25:14 +0000] "GET http://photos.example.com:8080/static/a.jpg?x=1 HTTP/1.1" 304 0 "-" "-"`,
		want: Request{Method: "GET", Target: "/static/a.jpg?x=1", Status: 304, Time: time.Date(2025, 3, 12, 6, 25, 14, 0, time.UTC)},
	},
	{
		name: "absolute-form with no path",
		line: `203.0.113.7 - - [12/Mar/2025:06:25:14 +0000] "HEAD HTTPS://photos.example.com HTTP/1.1" 200 0 "-" "-"`,
		want: Request{Method: "HEAD", Target: "/", Status: 200, Time: time.Date(2025, 3, 12, 6, 25, 14, 0, time.UTC)},
	},
	{
		name: "absolute-form with a query and no path",
		line: `203.0.113.7 - - [12/Mar/2025:06:25:14 +0000] "GET http://photos.example.com?x=1 HTTP/1.1" 200 0 "-" "-"`,
		want: Request{Method: "GET", Target: "/?x=1", Status: 200, Time: time.Date(2025, 3, 12, 6, 25, 14, 0, time.UTC)},
	},
	{
		name: "lighttpd default: host name as the second field",
		line: `198.51.100.4 photos.example.com - [12/Mar/2025:06:25:14 +0100] "GET /static/a%20b+c.jpg?x=%3F HTTP/1.1" 200 48213 "https://photos.example.com/" "Mozilla/5.0"`,
		want: Request{Method: "GET", Target: "/static/a%20b+c.jpg?x=%3F", Status: 200, Time: time.Date(2025, 3, 12, 5, 25, 14, 0, time.UTC)},
	},
	{
		name: "lighttpd default: IPv6 literal host in brackets",
		line: `2001:db8::1 [2001:db8::2]:8080 - [12/Mar/2025:06:25:14 +0000] "GET /static/a.jpg HTTP/1.1" 200 5 "-" "-"`,
		want: Request{Method: "GET", Target: "/static/a.jpg", Status: 200, Time: time.Date(2025, 3, 12, 6, 25, 14, 0, time.UTC)},
	},
	{
		name: `lighttpd escapes \" and upper-case \xHH`,
		line: `198.51.100.4 photos.example.com - [12/Mar/2025:06:25:14 +0000] "GET /static/\"\xC3\xA9\".jpg HTTP/1.1" 200 5 "-" "-"`,
		want: Request{Method: "GET", Target: "/static/\"\xc3\xa9\".jpg", Status: 200, Time: time.Date(2025, 3, 12, 6, 25, 14, 0, time.UTC)},
	},
	{
		name: `lighttpd JSON escaping: \u00HH`,
		line: `198.51.100.4 photos.example.com - [12/Mar/2025:06:25:14 +0000] "GET /static/\u00E5\u0022.jpg HTTP/1.1" 200 5 "-" "-"`,
		want: Request{Method: "GET", Target: "/static/\xe5\".jpg", Status: 200, Time: time.Date(2025, 3, 12, 6, 25, 14, 0, time.UTC)},
	},
	{
		name: "a backslash that starts no escape is kept",
		line: `192.0.2.10 - - [12/Mar/2025:06:25:14 +0000] "GET /static/\q\x4.jpg HTTP/1.1" 200 5 "-" "-"`,
		want: Request{Method: "GET", Target: `/static/\q\x4.jpg`, Status: 200, Time: time.Date(2025, 3, 12, 6, 25, 14, 0, time.UTC)},
	},
	{
		name: "a raw space in the target, as Apache logs a request it refused",
		line: `192.0.2.10 - - [12/Mar/2025:06:25:14 +0000] "GET /static/a b.jpg HTTP/1.1" 400 226 "-" "-"`,
		want: Request{Method: "GET", Target: "/static/a b.jpg", Status: 400, Time: time.Date(2025, 3, 12, 6, 25, 14, 0, time.UTC)},
	},
	{
		name: "time in another language: zero time, request kept",
		line: `192.0.2.10 - - [12/Mär/2025:06:25:14 +0000] "POST /upload HTTP/1.1" 200 5`,
		want: Request{Method: "POST", Target: "/upload", Status: 200},
	},
	{
		name: "carriage return before the newline",
		line: "192.0.2.10 - - [12/Mar/2025:06:25:14 +0000] \"GET /a.jpg HTTP/1.1\" 200\r",
		want: Request{Method: "GET", Target: "/a.jpg", Status: 200, Time: time.Date(2025, 3, 12, 6, 25, 14, 0, time.UTC)},
	},
}

func TestParseLine(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLine([]byte(tc.line))
			if err != nil {
				t.Fatalf("ParseLine: %v", err)
			}
			if got.Method != tc.want.Method || got.Target != tc.want.Target || got.Status != tc.want.Status || !got.Time.Equal(tc.want.Time) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseLineErrors(t *testing.T) {
	const pre = `192.0.2.10 - - [12/Mar/2025:06:25:14 +0000] `
	for _, tc := range []struct {
		name string
		line string
	}{
		{"empty", ""},
		{"garbage", "hello world"},
		{"no time", `192.0.2.10 - - "GET /a.jpg HTTP/1.1" 200 5`},
		{"request line -", pre + `"-" 400 0 "-" "-"`},
		{"empty request line", pre + `"" 400 0 "-" "-"`},
		{"TLS handshake sent to the HTTP port", pre + `"\x16\x03\x01\x00\xF1\x01\x00\x00\xED\x03\x03" 400 157 "-" "-"`},
		{"HTTP/0.9", pre + `"GET /x" 200 5`},
		{"not HTTP", pre + `"GET /x SSH-2.0" 400 5`},
		{"method not a token", pre + `"G(T /x HTTP/1.1" 400 5`},
		{"asterisk-form", pre + `"OPTIONS * HTTP/1.1" 200 0`},
		{"authority-form", pre + `"CONNECT photos.example.com:443 HTTP/1.1" 400 0`},
		{"relative target", pre + `"GET static/a.jpg HTTP/1.1" 400 0`},
		{"status -", pre + `"GET /a.jpg HTTP/1.1" - 0 "-" "-"`},
		{"status 99", pre + `"GET /a.jpg HTTP/1.1" 099 0`},
		{"status 600", pre + `"GET /a.jpg HTTP/1.1" 600 0`},
		{"status of two digits", pre + `"GET /a.jpg HTTP/1.1" 20 0`},
		{"status of four digits", pre + `"GET /a.jpg HTTP/1.1" 2000 0`},
		{"no status", pre + `"GET /a.jpg HTTP/1.1"`},
		{"unterminated request line", pre + `"GET /a.jpg HTTP/1.1 200 5`},
		{"escaped closing quote", pre + `"GET /a.jpg HTTP/1.1\" 200 5`},
		{"longer than 16 KiB", pre + `"GET /` + strings.Repeat("a", 16<<10) + ` HTTP/1.1" 200 5`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLine([]byte(tc.line))
			if err == nil {
				t.Fatalf("ParseLine(%q) = %+v, want an error", tc.line, got)
			}
		})
	}
}

func FuzzParseLine(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.line))
	}
	f.Add([]byte(`1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET \x2 HTTP/1.1" 200 1`))
	f.Add([]byte(`1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET http:// HTTP/1.1" 200 1`))
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := ParseLine(line)
		if err != nil {
			return
		}
		if req.Status < 100 || req.Status > 599 {
			t.Errorf("ParseLine(%q): status %d out of 100..599", line, req.Status)
		}
		if !strings.HasPrefix(req.Target, "/") {
			t.Errorf("ParseLine(%q): target %q does not start with /", line, req.Target)
		}
	})
}
