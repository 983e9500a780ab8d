package edge

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/photosleeve/offload/infra/local/templatepolicy"
)

// CachePolicy is the part of a CloudFront cache policy the edge follows
// (https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_CachePolicyConfig.html):
// the TTLs, and a whitelist of query strings that are both the cache key
// (with the path) and all of the query the origin gets
// (https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_CachePolicyQueryStringsConfig.html).
// Headers and cookies are never in the key here.
type CachePolicy struct {
	MinTTL, DefaultTTL, MaxTTL time.Duration
	// QueryStrings are the whitelisted query string names.
	QueryStrings []string
}

// cachePolicyResource is the template's cache policy.
const cachePolicyResource = "CdnCachePolicy"

// CachePolicyFromTemplate reads template.yaml's CdnCachePolicy. Anything
// the edge would not follow (a header or cookie in the key, a query string
// behaviour other than whitelist or none, compressed variants) is an
// error, so that a template change the edge cannot follow does not pass
// silently.
func CachePolicyFromTemplate(template []byte) (CachePolicy, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(template, &root); err != nil {
		return CachePolicy{}, fmt.Errorf("template: %w", err)
	}
	if len(root.Content) != 1 {
		return CachePolicy{}, errors.New("template: not a YAML document")
	}
	cfg := child(child(child(child(root.Content[0], "Resources"), cachePolicyResource), "Properties"), "CachePolicyConfig")
	if cfg == nil {
		return CachePolicy{}, fmt.Errorf("template: no %s.Properties.CachePolicyConfig", cachePolicyResource)
	}
	var p CachePolicy
	for name, d := range map[string]*time.Duration{"MinTTL": &p.MinTTL, "DefaultTTL": &p.DefaultTTL, "MaxTTL": &p.MaxTTL} {
		n := child(cfg, name)
		if n == nil {
			return p, fmt.Errorf("%s: no %s", cachePolicyResource, name)
		}
		secs, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil || secs < 0 {
			return p, fmt.Errorf("%s: %s %q: want seconds", cachePolicyResource, name, n.Value)
		}
		*d = time.Duration(secs) * time.Second
	}
	params := child(cfg, "ParametersInCacheKeyAndForwardedToOrigin")
	for _, name := range []string{"EnableAcceptEncodingGzip", "EnableAcceptEncodingBrotli"} {
		if n := child(params, name); n != nil && n.Value != "false" {
			return p, fmt.Errorf("%s: %s %s: the local edge keeps no compressed variants", cachePolicyResource, name, n.Value)
		}
	}
	if v := child(child(params, "HeadersConfig"), "HeaderBehavior"); v == nil || v.Value != "none" {
		return p, fmt.Errorf("%s: want HeadersConfig.HeaderBehavior none", cachePolicyResource)
	}
	if v := child(child(params, "CookiesConfig"), "CookieBehavior"); v == nil || v.Value != "none" {
		return p, fmt.Errorf("%s: want CookiesConfig.CookieBehavior none", cachePolicyResource)
	}
	qs := child(params, "QueryStringsConfig")
	switch b := child(qs, "QueryStringBehavior"); {
	case b != nil && b.Value == "none":
	case b != nil && b.Value == "whitelist":
		list := child(qs, "QueryStrings")
		if list == nil || list.Kind != yaml.SequenceNode || len(list.Content) == 0 {
			return p, fmt.Errorf("%s: whitelist without QueryStrings", cachePolicyResource)
		}
		for _, n := range list.Content {
			if isCloudFrontParam(n.Value) {
				return p, fmt.Errorf("%s: %s is CloudFront's own parameter", cachePolicyResource, n.Value)
			}
			p.QueryStrings = append(p.QueryStrings, n.Value)
		}
	default:
		return p, fmt.Errorf("%s: want QueryStringBehavior whitelist or none", cachePolicyResource)
	}
	if p.MinTTL > p.DefaultTTL || p.DefaultTTL > p.MaxTTL {
		return p, fmt.Errorf("%s: want MinTTL <= DefaultTTL <= MaxTTL", cachePolicyResource)
	}
	return p, nil
}

// child is templatepolicy's reading of a mapping.
var child = templatepolicy.Child

// ttl is how long an origin's 200 may be served from the cache, as
// "Manage how long content stays in the cache (expiration)" describes it
// for a cache policy
// (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/Expiration.html):
//   - no Cache-Control max-age/s-maxage and no Expires: DefaultTTL;
//   - s-maxage, else max-age, else Expires - Date: that, raised to MinTTL
//     and lowered to MaxTTL;
//   - no-store, no-cache or private: not cached when MinTTL is 0 (with a
//     MinTTL above 0 CloudFront caches for MinTTL).
//
// The subset: CloudFront also revalidates an expired object with a
// conditional request and honours stale-while-revalidate; this edge just
// fetches again.
func (p CachePolicy) ttl(cacheControl, expires, date string, now time.Time) time.Duration {
	var maxAge, sMaxAge time.Duration = -1, -1
	noStore := false
	for _, d := range strings.Split(cacheControl, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
		switch strings.ToLower(name) {
		case "no-store", "no-cache", "private":
			noStore = true
		case "max-age":
			maxAge = seconds(val)
		case "s-maxage":
			sMaxAge = seconds(val)
		}
	}
	if noStore {
		return p.MinTTL
	}
	origin := time.Duration(-1)
	switch {
	case sMaxAge >= 0:
		origin = sMaxAge
	case maxAge >= 0:
		origin = maxAge
	case expires != "":
		exp, err := http.ParseTime(expires)
		if err != nil {
			origin = 0 // an invalid Expires means already expired (RFC 9111, 5.3)
			break
		}
		base := now
		if d, err := http.ParseTime(date); err == nil {
			base = d
		}
		origin = max(exp.Sub(base), 0)
	}
	if origin < 0 {
		return p.DefaultTTL
	}
	return min(max(origin, p.MinTTL), p.MaxTTL)
}

// seconds reads a delta-seconds value; -1 if it is not one.
func seconds(s string) time.Duration {
	n, err := strconv.ParseInt(strings.Trim(s, `"`), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return time.Duration(n) * time.Second
}
