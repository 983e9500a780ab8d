package setup

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/photosleeve/offload"
)

// checkBucket applies S3's bucket naming rules (offload.CheckBucketName):
// a name that breaks one can never be a bucket, so it is a typo.
func checkBucket(b string) error {
	if err := offload.CheckBucketName(b); err != nil {
		return fmt.Errorf("bucket %q: %v", b, err)
	}
	return nil
}

// regionName is the shape of a region code: eu-west-1, us-gov-west-1,
// ap-southeast-2, cn-north-1, and newer partitions' longer first part
// (eusc-de-east-1) (https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-regions.html).
// A shape only: a region this build has never heard of is still accepted.
var regionName = regexp.MustCompile(`^[a-z]{2,}(-[a-z]+)+-[0-9]+$`)

// checkResolverBase: the base the web server prepends to the request
// target, so no trailing slash (it would double the one the path starts
// with), no query or fragment, and https (the resolver's Function URL);
// http only to a loopback address, for a local resolver.
func checkResolverBase(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("resolver base %q: %v", s, err)
	}
	switch {
	case u.Scheme == "https" && u.Host != "":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return fmt.Errorf("resolver base %q: want https://HOST (the ResolverBase output), or http://127.0.0.1:PORT for a local resolver", s)
	}
	switch {
	case u.User != nil:
		return fmt.Errorf("resolver base %q: no user or password in the URL", s)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return fmt.Errorf("resolver base %q: no query or fragment (the request's own query is kept)", s)
	case strings.HasSuffix(s, "/"):
		return fmt.Errorf("resolver base %q: no trailing slash (the request path begins with one): %s", s, strings.TrimRight(s, "/"))
	}
	return nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkValue refuses what the files init writes cannot carry as written:
// the env file is systemd's EnvironmentFile format, where a line is one
// assignment, leading and trailing blanks are dropped and quotes and
// backslashes are interpreted; the drop-ins are unit files, where
// Environment= and ReadWritePaths= split on blanks and % starts a
// specifier (systemd.exec(5), systemd.unit(5)). No value init writes
// needs any of these, so a value with one is a mistake, not something to
// escape.
func checkValue(name, v string) error {
	for _, r := range v {
		if r < 0x21 || r == 0x7f {
			return fmt.Errorf("%s %q: no blanks, newlines or control characters", name, v)
		}
		if strings.ContainsRune(`"'\$%`+"`", r) {
			return fmt.Errorf("%s %q: no %q (the systemd files init writes would read it differently)", name, v, r)
		}
	}
	return nil
}

// checkFolder wants a clean absolute path of its own.
func checkFolder(flag, p string) error {
	if err := checkValue(flag, p); err != nil {
		return err
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
		return fmt.Errorf("%s %q: want a clean absolute folder path, not /", flag, p)
	}
	return nil
}

// Validate checks every value before anything is written: each error names
// the flag or output it came from.
func (c Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	missing := func(v, what string) bool {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s: missing", what))
			return true
		}
		return false
	}
	if !missing(c.Bucket, "--bucket (or the BucketName output)") {
		add(checkBucket(c.Bucket))
	}
	if !missing(c.Table, "--table (or the TableName output)") {
		if err := offload.CheckTableName(c.Table); err != nil {
			add(fmt.Errorf("table %q: %v", c.Table, err))
		}
	}
	if !missing(c.Region, "--region (or the StackId in the stack outputs)") && !regionName.MatchString(c.Region) {
		add(fmt.Errorf("region %q: want a region code like eu-west-1", c.Region))
	}
	// A CloudFront distribution ID is capital letters and digits
	// (EDFDVBD6EXAMPLE); anything else is no ID, and cannot smuggle a
	// line into the env file.
	if c.CdnDistribution != "" {
		if err := offload.CheckDistributionID(c.CdnDistribution); err != nil {
			add(fmt.Errorf("CDN distribution: %v", err))
		}
	}
	if !missing(c.ResolverBase, "--resolver-base (or the ResolverBase output)") {
		if err := checkResolverBase(c.ResolverBase); err != nil {
			add(err)
		} else {
			add(checkValue("resolver base", c.ResolverBase))
		}
	}
	add(checkFolder("--watch", c.Watch))
	add(checkFolder("--archive", c.Archive))
	add(checkFolder("--cache-dir", c.CacheDir))
	if c.AccessLog != "" {
		add(checkFolder("--access-log", c.AccessLog))
	}
	for _, p := range [][2]string{{c.Watch, c.Archive}, {c.Watch, c.CacheDir}, {c.Archive, c.CacheDir}} {
		if p[0] != "" && p[1] != "" && (within(p[0], p[1]) || within(p[1], p[0])) {
			add(fmt.Errorf("folders %s and %s: the watch, archive and cache folders must not contain one another", p[0], p[1]))
		}
	}
	if c.Root != "" && !filepath.IsAbs(c.Root) {
		add(fmt.Errorf("--root %q: want an absolute path", c.Root))
	}
	for _, n := range []struct{ flag, v string }{{"--user", c.User}, {"--web-group", c.WebGroup}} {
		if n.v == "" {
			add(fmt.Errorf("%s: missing", n.flag))
		}
	}
	return errors.Join(errs...)
}

// within reports whether p is dir or inside it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}
