package lambda

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

// FunctionURLHandler adapts an http.Handler to a Lambda Function URL in
// BUFFERED mode: the event's method, raw path, raw query and headers become
// an *http.Request, and what the handler writes becomes the response. An
// event that is no valid request is answered 400 here and logged with the
// handler's logger when h is a *Handler.
func FunctionURLHandler(h http.Handler) func(context.Context, events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
	log := slog.Default()
	if rh, ok := h.(*Handler); ok {
		log = rh.cfg.Logger
	}
	return func(ctx context.Context, ev events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
		r, err := requestFromEvent(ctx, ev)
		if err != nil {
			log.Info("request", "method", ev.RequestContext.HTTP.Method, "path", truncate(ev.RawPath, 300),
				"status", http.StatusBadRequest, "err", err)
			return events.LambdaFunctionURLResponse{
				StatusCode: http.StatusBadRequest,
				Headers:    map[string]string{"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"},
				Body:       "bad request\n",
			}, nil
		}
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		return rec.response(), nil
	}
}

// requestFromEvent builds the request. rawPath arrives percent-encoded as
// the client sent it; parsing it as a URL keeps that encoding in RawPath, so
// the handler sees what a plain HTTP server would.
func requestFromEvent(ctx context.Context, ev events.LambdaFunctionURLRequest) (*http.Request, error) {
	// A raw "?" or "#" cannot be part of a path as sent; url.Parse would
	// cut the path there and name another file.
	if !strings.HasPrefix(ev.RawPath, "/") || strings.ContainsAny(ev.RawPath, "?#") {
		return nil, &url.Error{Op: "parse", URL: ev.RawPath, Err: errNotAbsolute}
	}
	u, err := url.Parse(ev.RawPath)
	if err != nil {
		return nil, err
	}
	if u.Host != "" || u.Scheme != "" || u.Opaque != "" {
		return nil, &url.Error{Op: "parse", URL: ev.RawPath, Err: errNotAbsolute}
	}
	u.RawQuery = ev.RawQueryString
	body := []byte(ev.Body)
	if ev.IsBase64Encoded {
		if body, err = base64.StdEncoding.DecodeString(ev.Body); err != nil {
			return nil, err
		}
	}
	r, err := http.NewRequestWithContext(ctx, ev.RequestContext.HTTP.Method, "/", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	r.URL = u
	// The raw path exactly as sent: the handler maps this, not a re-encoding.
	r.RequestURI = ev.RawPath
	if ev.RawQueryString != "" {
		r.RequestURI += "?" + ev.RawQueryString
	}
	r.Host = ev.RequestContext.DomainName
	for k, v := range ev.Headers {
		r.Header.Set(k, v)
	}
	r.RemoteAddr = ev.RequestContext.HTTP.SourceIP
	return r, nil
}

var errNotAbsolute = errors.New("not an absolute path")

// recorder is the http.ResponseWriter the adapter hands the handler.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

func (r *recorder) response() events.LambdaFunctionURLResponse {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	headers := make(map[string]string, len(r.header))
	for k, v := range r.header {
		headers[k] = strings.Join(v, ", ")
	}
	return events.LambdaFunctionURLResponse{StatusCode: r.status, Headers: headers, Body: r.body.String()}
}
