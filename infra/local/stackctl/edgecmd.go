package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/photosleeve/offload/infra/local/edge"
	"github.com/photosleeve/offload/infra/local/loopback"
)

const edgeUsage = `usage: stackctl edge --listen ADDR --api-listen ADDR --origin URL --bucket NAME --region REGION
         --distribution-id ID --template FILE --cache-dir DIR --public-key ID=PEMFILE [--public-key ...]
         [--api-access-keys KEY,...] [--ca FILE]

A local CloudFront edge (infra/local/edge): the distribution on --listen,
the CloudFront API (CreateInvalidation, GetInvalidation) on --api-listen,
both loopback. It reads the origin with the credentials in its environment
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN: the stack's
cloudfront component) and follows template.yaml's CdnCachePolicy.
`

// keyFlags is a repeatable --public-key ID=PEMFILE.
type keyFlags map[string]string

func (k keyFlags) String() string { return fmt.Sprint(map[string]string(k)) }

func (k keyFlags) Set(v string) error {
	id, file, ok := strings.Cut(v, "=")
	if !ok || id == "" || file == "" {
		return fmt.Errorf("%q: want ID=PEMFILE", v)
	}
	k[id] = file
	return nil
}

func runEdge(args []string) (int, error) {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	fs.Usage = func() { fmt.Print(edgeUsage) }
	listen := fs.String("listen", "", "loopback address of the distribution")
	apiListen := fs.String("api-listen", "", "loopback address of the CloudFront API endpoint")
	origin := fs.String("origin", "", "S3 endpoint URL (the AWS shim's), path-style")
	bucket := fs.String("bucket", "", "the origin bucket")
	region := fs.String("region", "", "the origin's region, for SigV4")
	distID := fs.String("distribution-id", "", "the distribution ID the API answers for")
	apiKeys := fs.String("api-access-keys", "", "comma-separated access keys allowed to call the API")
	template := fs.String("template", "", "template.yaml, for CdnCachePolicy")
	cacheDir := fs.String("cache-dir", "", "folder for cached bodies")
	ca := fs.String("ca", "", "CA bundle for an https origin")
	keys := keyFlags{}
	fs.Var(keys, "public-key", "ID=PEMFILE: a public key of the trusted key group (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	if *listen == "" || *apiListen == "" || *origin == "" || *bucket == "" || *region == "" || *distID == "" ||
		*template == "" || *cacheDir == "" || len(keys) == 0 {
		return 2, errors.New(edgeUsage)
	}
	for _, a := range []string{*listen, *apiListen} {
		if host, _, err := net.SplitHostPort(a); err != nil || !net.ParseIP(host).IsLoopback() {
			return 2, fmt.Errorf("%q: want a loopback address", a)
		}
	}
	cfg, err := edgeConfig(keys, *template, *ca)
	if err != nil {
		return 1, err
	}
	cfg.Origin, cfg.Bucket, cfg.Region, cfg.DistributionID, cfg.CacheDir = *origin, *bucket, *region, *distID, *cacheDir
	for _, k := range strings.Split(*apiKeys, ",") {
		if k != "" {
			cfg.APIAccessKeys = append(cfg.APIAccessKeys, k)
		}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "edge")
	e, err := edge.New(cfg)
	if err != nil {
		return 1, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serveEdge(ctx, cfg.Logger, map[string]http.Handler{*listen: e, *apiListen: e.API()})
}

// edgeConfig reads the key group, the cache policy and the origin's
// credentials (from the environment, as the SDK does) into a Config.
func edgeConfig(keys keyFlags, template, ca string) (edge.Config, error) {
	var cfg edge.Config
	cfg.KeyGroup = edge.KeyGroup{}
	for id, file := range keys {
		b, err := os.ReadFile(file)
		if err != nil {
			return cfg, err
		}
		if cfg.KeyGroup[id], err = edge.ParsePublicKey(b); err != nil {
			return cfg, fmt.Errorf("public key %s (%s): %w", id, file, err)
		}
	}
	tmpl, err := os.ReadFile(template)
	if err != nil {
		return cfg, err
	}
	if cfg.Policy, err = edge.CachePolicyFromTemplate(tmpl); err != nil {
		return cfg, err
	}
	aws, err := config.LoadDefaultConfig(context.Background(), config.WithSharedConfigFiles([]string{}),
		config.WithSharedCredentialsFiles([]string{}), config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	if err != nil {
		return cfg, err
	}
	cfg.Credentials = aws.Credentials
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil // loopback only
	if ca != "" {
		if err := loopback.TrustCA(transport, ca); err != nil {
			return cfg, err
		}
	}
	cfg.Transport = transport
	return cfg, nil
}

// serveEdge serves each handler on its address until ctx ends or one
// server fails; then it stops them all.
func serveEdge(ctx context.Context, log *slog.Logger, handlers map[string]http.Handler) (int, error) {
	errs := make(chan error, len(handlers))
	var servers []*http.Server
	for addr, h := range handlers {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return 1, err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
		servers = append(servers, srv)
		go func() { errs <- srv.Serve(l) }()
		log.Info("serving", "addr", addr)
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.Shutdown(sctx)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return 1, err
	}
	return 0, nil
}
