// Package setup is "offload-agent init": it turns the SAM stack's outputs
// into a configured host. It writes the agent's env file, gives the agent's
// group access to the watch and archive folders the way docs/install.md's
// commands do (group, g+rwX, setgid, a default ACL), makes the hot
// cache's folder, and writes the systemd drop-ins for the agent
// (ReadWritePaths=), for the prune service (ReadWritePaths=) and for
// lighttpd (OFFLOAD_RESOLVER_BASE, OFFLOAD_CACHE_ROOT).
//
// Run plans every item before it changes any, so a refusal (a value a
// person set, a drop-in a person edited) changes nothing. A second run with
// the same settings changes nothing and says so per item.
package setup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Paths init writes, fixed by the Debian package and the unit.
const (
	EnvFile        = "/etc/offload/agent.env"
	AgentDropIn    = "/etc/systemd/system/offload-agent.service.d/offload.conf"
	LighttpdDropIn = "/etc/systemd/system/lighttpd.service.d/offload.conf"
	PruneDropIn    = "/etc/systemd/system/offload-prune.service.d/offload.conf"
)

// Defaults for the folders and accounts (docs/install.md's and the package's).
const (
	DefaultWatch    = "/srv/www/static"
	DefaultArchive  = "/srv/www/archive"
	DefaultCacheDir = "/var/cache/offload"
	DefaultUser     = "offload"
	DefaultWebGroup = "www-data"
)

// Config is everything init is told.
type Config struct {
	// Root prefixes every path init reads or writes (tests, images);
	// values written into the files are the paths without it. Users and
	// groups are looked up on this system either way.
	Root string

	Watch, Archive, CacheDir string
	// User is the agent's service user; its group, of the same name
	// (the unit's Group=), gets the folders.
	User string
	// WebGroup is the web server's group: with AccessLog set the agent's
	// user must be in it to read the access log.
	WebGroup string

	Bucket, Table, Region, ResolverBase string
	// CdnDistribution, with the template's Cdn=on (output
	// CdnDistributionId), goes into the env file as
	// OFFLOAD_CDN_DISTRIBUTION_ID, where offload-agent erase reads it, so
	// an erasure also invalidates the edge's copies without a flag to
	// remember. Empty: no CDN, and no such line.
	CdnDistribution string
	// AccessLog, when set, turns the hot cache on: the env file gets
	// OFFLOAD_CACHE_DIR and OFFLOAD_ACCESS_LOG.
	AccessLog string

	Force  bool // change values and files a person set
	DryRun bool // say what would change; change nothing
}

// Action is what happened to one item.
type Action string

// The actions, as printed.
const (
	Created     Action = "created"
	Changed     Action = "changed"
	Unchanged   Action = "unchanged"
	WouldCreate Action = "would create"
	WouldChange Action = "would change"
)

// Result is one line of init's report.
type Result struct {
	Action Action
	Path   string
	Detail string
}

func (r Result) String() string { return fmt.Sprintf("%-12s  %s  (%s)", r.Action, r.Path, r.Detail) }

// RefusedError lists what init would overwrite that a person set; nothing
// was changed.
type RefusedError struct{ Items []string }

func (e *RefusedError) Error() string {
	return "refusing to overwrite what a person set (run again with --force to replace it):\n  " + strings.Join(e.Items, "\n  ")
}

// ErrNeedRoot: init changes owners and writes under /etc.
var ErrNeedRoot = errors.New("init must run as root: it writes " + EnvFile + " (mode 0640, group of the agent's user), the systemd drop-ins " +
	AgentDropIn + ", " + PruneDropIn + " and " + LighttpdDropIn + ", and changes the group, mode and default ACL of the watch and archive folders; run it with sudo (or --dry-run to see what it would do)")

// ErrAccount is a missing user or group: a configuration error.
var ErrAccount = errors.New("missing account")

// ids are the accounts init uses.
type ids struct {
	uid, gid uint32 // the agent's user and its group
	webGID   uint32
	inWeb    bool // the agent's user is a member of the web group
}

func lookupIDs(c Config) (ids, error) {
	var r ids
	u, err := user.Lookup(c.User)
	if err != nil {
		return r, fmt.Errorf("%w: user %q does not exist: install the offload-agent package (it creates the user), or: useradd --system --user-group --no-create-home --shell /usr/sbin/nologin %s", ErrAccount, c.User, c.User)
	}
	g, err := user.LookupGroup(c.User)
	if err != nil {
		return r, fmt.Errorf("%w: group %q (the unit's Group=) does not exist: groupadd --system %s && usermod -g %s %s", ErrAccount, c.User, c.User, c.User, c.User)
	}
	w, err := user.LookupGroup(c.WebGroup)
	if err != nil {
		return r, fmt.Errorf("%w: web server group %q does not exist: install the web server first, or pass its group with --web-group", ErrAccount, c.WebGroup)
	}
	r.uid, r.gid, r.webGID = atoi(u.Uid), atoi(g.Gid), atoi(w.Gid)
	gids, _ := u.GroupIds()
	r.inWeb = slices.Contains(gids, w.Gid)
	return r, nil
}

func atoi(s string) uint32 { n, _ := strconv.ParseUint(s, 10, 32); return uint32(n) }

// item is one planned change.
type item struct {
	path    string // as shown: with Root
	created bool   // did not exist
	changed bool   // exists and differs
	detail  string
	apply   func() error
}

func (it item) result(dry bool) Result {
	a := Unchanged
	switch {
	case it.created && dry:
		a = WouldCreate
	case it.created:
		a = Created
	case it.changed && dry:
		a = WouldChange
	case it.changed:
		a = Changed
	}
	return Result{a, it.path, it.detail}
}

// Run plans every item, refuses with a *RefusedError if one would replace
// what a person set (without Force), and otherwise applies them in order
// (none with DryRun). It returns one Result per item.
func Run(c Config) ([]Result, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 && !c.DryRun {
		return nil, ErrNeedRoot
	}
	id, err := lookupIDs(c)
	if err != nil {
		return nil, err
	}
	p := planner{c: c, id: id}
	items := []item{
		p.envFile(),
		p.sharedFolder(c.Watch, "watch"),
		p.sharedFolder(c.Archive, "archive"),
		p.cacheFolder(),
		p.dropIn(AgentDropIn, agentDropIn(c)),
		p.dropIn(PruneDropIn, pruneDropIn(c)),
		p.dropIn(LighttpdDropIn, lighttpdDropIn(c)),
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	if len(p.refused) > 0 {
		return nil, &RefusedError{p.refused}
	}
	var out []Result
	for _, it := range items {
		if !c.DryRun && (it.created || it.changed) {
			if err := it.apply(); err != nil {
				return out, fmt.Errorf("%s: %w", it.path, err)
			}
		}
		out = append(out, it.result(c.DryRun))
	}
	return out, nil
}

// NextSteps is what a person does after init, in order.
func NextSteps(c Config, r []Result) []string {
	steps := []string{
		"lighty-enable-mod offload              # the package's /etc/lighttpd/conf-available/50-offload.conf",
		"systemctl daemon-reload                # reads the drop-ins",
		"systemctl restart lighttpd             # picks up OFFLOAD_RESOLVER_BASE and OFFLOAD_CACHE_ROOT",
		"offload-agent doctor --web-url http://127.0.0.1/static/   # checks credentials, grants, folders and the web server",
		"systemctl start offload-agent          # the package enabled it; restart it if it runs",
	}
	if c.AccessLog != "" {
		if id, err := lookupIDs(c); err == nil && !id.inWeb {
			steps = slices.Insert(steps, 0, fmt.Sprintf("usermod -aG %s %s   # the hot cache reads %s, which the web server writes for its group", c.WebGroup, c.User, c.AccessLog))
		}
	}
	return steps
}

// planner builds the items, collecting errors and refusals.
type planner struct {
	c       Config
	id      ids
	errs    []error
	refused []string
	// linked are the files in the shared folders with more than one hard
	// link, which folderFixes leaves alone.
	linked []string
}

func (p *planner) at(path string) string { return filepath.Join("/", p.c.Root, path) }

func (p *planner) fail(err error) item {
	p.errs = append(p.errs, err)
	return item{}
}

// managedEnv is what init writes into the env file.
func managedEnv(c Config) []KV {
	kv := []KV{
		{"OFFLOAD_WATCH", c.Watch},
		{"OFFLOAD_ARCHIVE", c.Archive},
		{"OFFLOAD_BUCKET", c.Bucket},
		{"OFFLOAD_TABLE", c.Table},
		{"AWS_REGION", c.Region},
		{"OFFLOAD_RESOLVER_BASE", c.ResolverBase},
	}
	if c.CdnDistribution != "" {
		kv = append(kv, KV{"OFFLOAD_CDN_DISTRIBUTION_ID", c.CdnDistribution})
	}
	if c.AccessLog != "" {
		kv = append(kv, KV{"OFFLOAD_CACHE_DIR", c.CacheDir}, KV{"OFFLOAD_ACCESS_LOG", c.AccessLog})
	}
	return kv
}

// envFile: 0640 root:GROUP, the managed keys merged into what is there.
func (p *planner) envFile() item {
	path := p.at(EnvFile)
	it := item{path: path}
	old, err := os.ReadFile(path)
	var st syscall.Stat_t
	switch {
	case errors.Is(err, fs.ErrNotExist):
		it.created = true
	case err != nil:
		return p.fail(fmt.Errorf("read %s: %w", path, err))
	default:
		if err := syscall.Lstat(path, &st); err != nil {
			return p.fail(err)
		}
		if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
			return p.fail(fmt.Errorf("%s: not a regular file", path))
		}
	}
	m := MergeEnv(old, managedEnv(p.c), p.c.Force)
	for _, c := range m.Conflicts {
		p.refused = append(p.refused, path+": "+c.String())
	}
	var what []string
	if len(m.Added) > 0 {
		what = append(what, "set "+strings.Join(m.Added, " "))
	}
	for _, c := range m.Changed {
		what = append(what, fmt.Sprintf("%s %q -> %q (--force)", c.Key, c.Have, c.Want))
	}
	const mode = 0o640
	if !it.created {
		if st.Mode&0o7777 != mode {
			what = append(what, fmt.Sprintf("mode %04o -> %04o", st.Mode&0o7777, mode))
		}
		if st.Uid != 0 || st.Gid != p.id.gid {
			what = append(what, fmt.Sprintf("owner %d:%d -> root:%s", st.Uid, st.Gid, p.c.User))
		}
		it.changed = len(what) > 0
	}
	switch {
	case it.created:
		it.detail = fmt.Sprintf("%04o root:%s; %s", mode, p.c.User, strings.Join(what, "; "))
	case it.changed:
		it.detail = strings.Join(what, "; ")
	default:
		it.detail = fmt.Sprintf("%04o root:%s, %d settings as given", mode, p.c.User, len(managedEnv(p.c)))
	}
	it.apply = func() error {
		if err := mkdirParents(filepath.Dir(path)); err != nil {
			return err
		}
		return writeFileAtomic(path, m.Out, mode, 0, p.id.gid)
	}
	return it
}

// dropIn is a file init owns whole: created, kept, or (with Force) replaced.
func (p *planner) dropIn(rel string, content []byte) item {
	path := p.at(rel)
	it := item{path: path}
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		it.created = true
		it.detail = "0644 root:root"
	case err != nil:
		return p.fail(fmt.Errorf("read %s: %w", path, err))
	case string(old) == string(content):
		it.detail = "as given"
	case !p.c.Force:
		p.refused = append(p.refused, path+": differs from what init writes:\n"+indent(lineDiff(old, content), "    "))
	default:
		it.changed = true
		it.detail = "replaced (--force): " + strings.ReplaceAll(strings.TrimSpace(lineDiff(old, content)), "\n", "; ")
	}
	switch rel {
	case AgentDropIn:
		it.detail += "; ReadWritePaths=" + strings.Join([]string{p.c.Watch, p.c.Archive, p.c.CacheDir}, " ")
	case PruneDropIn:
		it.detail += "; ReadWritePaths=" + p.c.Archive
	case LighttpdDropIn:
		it.detail += "; OFFLOAD_RESOLVER_BASE, OFFLOAD_CACHE_ROOT"
	}
	it.apply = func() error {
		if err := mkdirParents(filepath.Dir(path)); err != nil {
			return err
		}
		return writeFileAtomic(path, content, 0o644, 0, 0)
	}
	return it
}

const dropInHeader = "# Written by offload-agent init; init refuses to replace a file edited by hand\n# unless given --force. Run offload-agent init again to change it.\n"

// agentDropIn replaces the unit's ReadWritePaths= (an empty assignment
// resets the list, systemd.exec(5)) with the folders given.
func agentDropIn(c Config) []byte {
	return []byte(dropInHeader + "[Service]\nReadWritePaths=\nReadWritePaths=" + c.Watch + " " + c.Archive + " " + c.CacheDir + "\n")
}

// pruneDropIn does the same for offload-prune.service, which may write
// the archive alone: it removes archived files and touches nothing else.
func pruneDropIn(c Config) []byte {
	return []byte(dropInHeader + "[Service]\nReadWritePaths=\nReadWritePaths=" + c.Archive + "\n")
}

// lighttpdDropIn sets what infra/lighttpd/offload.conf reads from
// lighttpd's environment.
func lighttpdDropIn(c Config) []byte {
	return []byte(dropInHeader + "[Service]\nEnvironment=OFFLOAD_RESOLVER_BASE=" + c.ResolverBase + "\nEnvironment=OFFLOAD_CACHE_ROOT=" + c.CacheDir + "\n")
}

// lineDiff is a short difference for a person: lines only in old (-), then
// lines only in new (+).
func lineDiff(old, new []byte) string {
	o, n := strings.Split(strings.TrimSuffix(string(old), "\n"), "\n"), strings.Split(strings.TrimSuffix(string(new), "\n"), "\n")
	var b strings.Builder
	for _, l := range o {
		if !slices.Contains(n, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range n {
		if !slices.Contains(o, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

func indent(s, pre string) string {
	return pre + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n"+pre)
}

// mkdirParents makes a folder and its parents 0755 root:root, as mkdir -p
// does under umask 022.
func mkdirParents(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return nil
}

// writeFileAtomic replaces path with data, mode and owner, so that a
// reader (systemd, the agent) sees the old file or the new one whole, and
// a crash leaves one of them: a temporary file in the same folder, synced,
// renamed over the name, then the folder synced.
func writeFileAtomic(path string, data []byte, mode os.FileMode, uid, gid uint32) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".init-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename, a no-op
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Chown(int(uid), int(gid)); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
