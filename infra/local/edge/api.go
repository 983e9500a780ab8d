package edge

import (
	"crypto/rand"
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// The CloudFront API's invalidation calls, for the one distribution the
// edge serves, as the API reference gives them:
//   - CreateInvalidation, POST /2020-05-31/distribution/ID/invalidation
//     with an InvalidationBatch; 201 with Location and the Invalidation
//     (https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_CreateInvalidation.html);
//   - GetInvalidation, GET /2020-05-31/distribution/ID/invalidation/INV
//     (https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_GetInvalidation.html).
//
// Differences from AWS:
//   - The caller is checked by the access key of its SigV4 Authorization
//     header only: the signature itself is not verified (the key's
//     secret is not known here). A key not allowed, or no SigV4
//     header, gets 403 AccessDenied.
//   - An invalidation is done before the answer is sent, so its Status is
//     Completed at once; on AWS it is InProgress for a while and the
//     caller polls GetInvalidation (or uses the SDK's waiter).
//   - No limits on paths in progress or per batch, no ListInvalidations.

// apiVersion and apiNamespace are the API's version and XML namespace.
const (
	apiVersion   = "2020-05-31"
	apiNamespace = "http://cloudfront.amazonaws.com/doc/2020-05-31/"
)

// paths is the Paths of an InvalidationBatch.
type paths struct {
	Quantity int      `xml:"Quantity"`
	Items    []string `xml:"Items>Path,omitempty"`
}

// invalidationBatch is the request body of CreateInvalidation.
type invalidationBatch struct {
	Paths           paths  `xml:"Paths"`
	CallerReference string `xml:"CallerReference"`
}

// invalidation is the answer of CreateInvalidation and GetInvalidation.
type invalidation struct {
	XMLName           xml.Name          `xml:"http://cloudfront.amazonaws.com/doc/2020-05-31/ Invalidation"`
	ID                string            `xml:"Id"`
	Status            string            `xml:"Status"`
	CreateTime        string            `xml:"CreateTime"`
	InvalidationBatch invalidationBatch `xml:"InvalidationBatch"`
}

// api serves the invalidation calls and keeps every invalidation made.
type api struct {
	distributionID string
	allowed        []string
	cache          *diskCache
	now            func() time.Time
	log            *slog.Logger

	mu    sync.Mutex
	byID  map[string]*invalidation
	byRef map[string]*invalidation
}

func newAPI(id string, allowed []string, cache *diskCache, now func() time.Time, log *slog.Logger) *api {
	return &api{distributionID: id, allowed: allowed, cache: cache, now: now, log: log,
		byID: map[string]*invalidation{}, byRef: map[string]*invalidation{}}
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/"+apiVersion+"/distribution/")
	if !ok {
		apiError(w, http.StatusNotFound, "Sender", "InvalidArgument", "the local edge serves only the invalidation calls of API "+apiVersion)
		return
	}
	dist, rest, _ := strings.Cut(rest, "/")
	if who := accessKeyOf(r); who == "" || !slices.Contains(a.allowed, who) {
		a.log.Info("API call refused", "access_key", who, "path", r.URL.Path)
		apiError(w, http.StatusForbidden, "Sender", "AccessDenied", "User: "+who+" is not authorized to perform this call on the local edge")
		return
	}
	if dist != a.distributionID {
		apiError(w, http.StatusNotFound, "Sender", "NoSuchDistribution", "The specified distribution does not exist.")
		return
	}
	switch {
	case rest == "invalidation" && r.Method == http.MethodPost:
		a.create(w, r)
	case strings.HasPrefix(rest, "invalidation/") && r.Method == http.MethodGet:
		a.get(w, strings.TrimPrefix(rest, "invalidation/"))
	default:
		apiError(w, http.StatusMethodNotAllowed, "Sender", "InvalidArgument", "the local edge serves only CreateInvalidation and GetInvalidation")
	}
}

// create is CreateInvalidation. A CallerReference seen before returns the
// invalidation it made if the paths are the same, and
// InvalidationBatchAlreadyExists if not (CallerReference, in the API
// reference).
func (a *api) create(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || len(body) == 0 {
		apiError(w, http.StatusBadRequest, "Sender", "MissingBody", "This operation requires a body.")
		return
	}
	var batch invalidationBatch
	if err := xml.Unmarshal(body, &batch); err != nil {
		apiError(w, http.StatusBadRequest, "Sender", "MalformedInput", err.Error())
		return
	}
	switch {
	case batch.CallerReference == "":
		apiError(w, http.StatusBadRequest, "Sender", "InvalidArgument", "CallerReference is required.")
		return
	case batch.Paths.Quantity != len(batch.Paths.Items):
		apiError(w, http.StatusBadRequest, "Sender", "InconsistentQuantities", "The value of Quantity and the size of Items don't match.")
		return
	case len(batch.Paths.Items) == 0:
		apiError(w, http.StatusBadRequest, "Sender", "InvalidArgument", "At least one path is required.")
		return
	}
	for _, p := range batch.Paths.Items {
		if !strings.HasPrefix(p, "/") {
			apiError(w, http.StatusBadRequest, "Sender", "InvalidArgument", "Your request contains one or more invalid invalidation paths: "+p)
			return
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.byRef[batch.CallerReference]; old != nil {
		if !slices.Equal(old.InvalidationBatch.Paths.Items, batch.Paths.Items) {
			apiError(w, http.StatusConflict, "Sender", "InvalidationBatchAlreadyExists", "The CallerReference was used before with other paths.")
			return
		}
		a.write(w, r, http.StatusCreated, old)
		return
	}
	n := a.cache.invalidate(batch.Paths.Items)
	inv := &invalidation{ID: "I" + RandomID(13), Status: "Completed",
		CreateTime: a.now().UTC().Format("2006-01-02T15:04:05.000Z"), InvalidationBatch: batch}
	a.byID[inv.ID], a.byRef[batch.CallerReference] = inv, inv
	a.log.Info("invalidation", "id", inv.ID, "paths", batch.Paths.Items, "objects_dropped", n)
	a.write(w, r, http.StatusCreated, inv)
}

// get is GetInvalidation.
func (a *api) get(w http.ResponseWriter, id string) {
	a.mu.Lock()
	inv := a.byID[id]
	a.mu.Unlock()
	if inv == nil {
		apiError(w, http.StatusNotFound, "Sender", "NoSuchInvalidation", "The specified invalidation does not exist.")
		return
	}
	a.write(w, nil, http.StatusOK, inv)
}

// write sends inv; for a creation, with its Location.
func (a *api) write(w http.ResponseWriter, r *http.Request, status int, inv *invalidation) {
	b, err := xml.Marshal(inv)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "Receiver", "InternalError", err.Error())
		return
	}
	if r != nil {
		w.Header().Set("Location", "http://"+r.Host+"/"+apiVersion+"/distribution/"+a.distributionID+"/invalidation/"+inv.ID)
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	io.WriteString(w, xml.Header)
	w.Write(b)
}

// apiError sends the API's error document, an ErrorResponse as the
// REST-XML protocol has it.
func apiError(w http.ResponseWriter, status int, typ, code, message string) {
	var b strings.Builder
	b.WriteString(xml.Header)
	b.WriteString(`<ErrorResponse xmlns="` + apiNamespace + `"><Error><Type>` + typ + `</Type><Code>` + code + `</Code><Message>`)
	xml.EscapeText(&b, []byte(message))
	b.WriteString(`</Message></Error><RequestId>` + RandomID(20) + `</RequestId></ErrorResponse>`)
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	io.WriteString(w, b.String())
}

// accessKeyOf returns the access key of a SigV4 Authorization header, or
// "" without one.
func accessKeyOf(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") {
		return ""
	}
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return ""
	}
	key, _, _ := strings.Cut(cred, "/")
	return key
}

// RandomID returns n random capitals and digits, as CloudFront's IDs are
// (a distribution's after an E, a public key's after a K).
func RandomID(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
