package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/photosleeve/offload/agent/setup"
)

const initUsage = `offload-agent init [--stack-outputs FILE|-] [flags]

Configures this host for the agent from the SAM stack's outputs, as root:
  ` + setup.EnvFile + `     the agent's settings, mode 0640 root:offload (keys it does not
                             manage are kept; a value a person set is not replaced without --force)
  the watch and archive folders   group offload, g+rwX, setgid, default ACL g:offload:rwX
                             (what docs/install.md's commands do by hand), made if missing
  the cache folder           0755 offload:offload, for the hot cache and the web server
  ` + setup.AgentDropIn + `
                             ReadWritePaths= the three folders
  ` + setup.PruneDropIn + `
                             ReadWritePaths= the archive (offload-prune.timer, not enabled)
  ` + setup.LighttpdDropIn + `
                             OFFLOAD_RESOLVER_BASE and OFFLOAD_CACHE_ROOT for lighttpd
Each item prints created, changed or unchanged; a second run changes nothing.

  aws cloudformation describe-stacks --stack-name offload > stack.json
  sudo offload-agent init --stack-outputs stack.json

Exit status: 0 done, 1 refused (something a person set would be replaced) or failed,
2 bad usage, a bad value, a missing user or group, or not root.
`

// initCommand is "offload-agent init": flags in, setup.Run, one line per
// item, then the next steps.
func initCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := newFlagSet("init", initUsage)
	var c setup.Config
	outputs := fs.String("stack-outputs", "", "the JSON of aws cloudformation describe-stacks --stack-name NAME (- for stdin): BucketName, TableName, ResolverBase (or ResolverUrl), the region from StackId, and with Cdn=on CdnDistributionId (for erase)")
	fs.StringVar(&c.Bucket, "bucket", "", "S3 bucket (wins over the BucketName output)")
	fs.StringVar(&c.Table, "table", "", "DynamoDB ledger table (wins over the TableName output)")
	fs.StringVar(&c.Region, "region", "", "AWS region, e.g. eu-west-1 (wins over the stack's)")
	fs.StringVar(&c.ResolverBase, "resolver-base", "", "the resolver's base URL, https://..., no trailing slash (wins over the ResolverBase output)")
	fs.StringVar(&c.Watch, "watch", setup.DefaultWatch, "folder the back-end writes originals into")
	fs.StringVar(&c.Archive, "archive", setup.DefaultArchive, "folder offloaded files are moved to")
	fs.StringVar(&c.CacheDir, "cache-dir", setup.DefaultCacheDir, "the hot cache's folder (the web server's OFFLOAD_CACHE_ROOT)")
	fs.StringVar(&c.AccessLog, "access-log", "", "turn the hot cache on: the web server's access log, e.g. /var/log/lighttpd/access.log (sets OFFLOAD_CACHE_DIR and OFFLOAD_ACCESS_LOG)")
	fs.StringVar(&c.User, "user", setup.DefaultUser, "the agent's service user; its group of the same name gets the folders")
	fs.StringVar(&c.WebGroup, "web-group", setup.DefaultWebGroup, "the web server's group")
	fs.BoolVar(&c.Force, "force", false, "replace values and files a person set")
	fs.BoolVar(&c.DryRun, "dry-run", false, "print each change init would make; make none")
	fs.StringVar(&c.Root, "root", "", "prefix every path read or written with this folder (tests, image builds); users and groups are still this system's")
	if ok, code := parseCommand(fs, args, stdout, stderr); !ok {
		return code
	}
	if *outputs != "" {
		o, err := readStackOutputs(*outputs)
		if err != nil {
			fmt.Fprintf(stderr, "offload-agent init: %v\n", err)
			return 2
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for _, v := range []struct {
			flag string
			dst  *string
			from string
		}{{"bucket", &c.Bucket, o.Bucket}, {"table", &c.Table, o.Table}, {"region", &c.Region, o.Region}, {"resolver-base", &c.ResolverBase, o.ResolverBase}} {
			if !set[v.flag] {
				*v.dst = v.from
			}
		}
		// With Cdn=on, for erase (OFFLOAD_CDN_DISTRIBUTION_ID).
		c.CdnDistribution = o.CdnDistribution
	}
	res, err := setup.Run(c)
	for _, r := range res {
		fmt.Fprintln(stdout, r)
	}
	var refused *setup.RefusedError
	switch {
	case errors.As(err, &refused):
		fmt.Fprintf(stderr, "offload-agent init: %v\n", err)
		return 1
	case errors.Is(err, setup.ErrNeedRoot), errors.Is(err, setup.ErrAccount):
		fmt.Fprintf(stderr, "offload-agent init: %v\n", err)
		return 2
	case err != nil && res == nil:
		if c.Validate() != nil {
			fmt.Fprintf(stderr, "offload-agent init: bad value: %v\n", oneLine(err))
			return 2
		}
		fmt.Fprintf(stderr, "offload-agent init: %v\n", err)
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "offload-agent init: %v (the items above were done)\n", err)
		return 1
	}
	if c.DryRun {
		fmt.Fprintln(stdout, "\ndry run: nothing was changed")
		return 0
	}
	fmt.Fprintln(stdout, "\nnext:")
	for _, s := range setup.NextSteps(c, res) {
		fmt.Fprintln(stdout, "  "+s)
	}
	return 0
}

func readStackOutputs(name string) (setup.StackOutputs, error) {
	if name == "-" {
		return setup.ParseStackOutputs(os.Stdin)
	}
	f, err := os.Open(name)
	if err != nil {
		return setup.StackOutputs{}, fmt.Errorf("--stack-outputs: %w", err)
	}
	defer f.Close()
	return setup.ParseStackOutputs(f)
}
