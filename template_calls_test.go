package offload_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/photosleeve/offload/infra/local/templatepolicy"
)

// This file reads the code of the four components (the agent, the
// resolver, the audit, the eraser) to find every AWS call each can make, so that
// TestTemplatePoliciesAreLeastPrivilege compares the template's policies
// with the code itself rather than with a second list kept by hand.

// Where a granted action applies: the originals under the key prefix, the
// bucket itself, the ledger table, or its index "erasures".
const (
	onObjects  = "objects"
	onBucket   = "bucket"
	onTable    = "table"
	onErasures = "index erasures"
	onSecret   = "the CDN key's secret"
	// The CloudFront distribution (with the template's Cdn=on).
	onDistribution = "distribution"
	// The site's KMS key (with the template's KmsKeyArn).
	onKey = "the site's KMS key"
)

// iamAction is an IAM action and the kind of resource it is granted on.
type iamAction struct{ Action, On string }

// operationActions maps each AWS API operation the code may call ("s3.PutObject")
// to the IAM actions AWS authorizes it as, and the resource type of each.
//
// S3: the table "API operations defined by Amazon S3" (operation → IAM
// action) and the resource types of "Actions defined by Amazon S3" in
// "Actions, resources, and condition keys for Amazon S3",
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html,
// also laid out by resource type in "Required permissions for Amazon S3 API
// operations",
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html:
// the multipart calls authorize as s3:PutObject, HeadObject as
// s3:GetObject, ListObjectsV2 as s3:ListBucket, ListObjectVersions as
// s3:ListBucketVersions ("Be aware of the name difference",
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectVersions.html),
// ListMultipartUploads as s3:ListBucketMultipartUploads, ListParts as
// s3:ListMultipartUploadParts.
//
// DynamoDB: each item operation authorizes as the action of its own name on
// the table, "Actions, resources, and condition keys for Amazon DynamoDB",
// https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazondynamodb.html.
// A Query on an index authorizes on the index's ARN (TABLE/index/NAME,
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/iam-policy-specific-table-indexes.html):
// the code's only Query is the agent's on the index "erasures" (agent/erasures.go),
// so Query maps there; a Query of the table itself would need its own entry.
//
// An operation the code calls that is missing here fails the test: add it,
// from those pages, rather than guess.
var operationActions = map[string][]iamAction{
	"s3.PutObject":               {{"s3:PutObject", onObjects}},
	"s3.CreateMultipartUpload":   {{"s3:PutObject", onObjects}},
	"s3.UploadPart":              {{"s3:PutObject", onObjects}},
	"s3.CompleteMultipartUpload": {{"s3:PutObject", onObjects}},
	"s3.AbortMultipartUpload":    {{"s3:AbortMultipartUpload", onObjects}},
	"s3.ListParts":               {{"s3:ListMultipartUploadParts", onObjects}},
	"s3.ListMultipartUploads":    {{"s3:ListBucketMultipartUploads", onBucket}},
	"s3.ListObjectsV2":           {{"s3:ListBucket", onBucket}},
	"s3.ListObjectVersions":      {{"s3:ListBucketVersions", onBucket}},
	"s3.HeadObject":              {{"s3:GetObject", onObjects}},
	"s3.GetObject":               {{"s3:GetObject", onObjects}},
	"s3.DeleteObject":            {{"s3:DeleteObject", onObjects}},
	"dynamodb.GetItem":           {{"dynamodb:GetItem", onTable}},
	"dynamodb.PutItem":           {{"dynamodb:PutItem", onTable}},
	"dynamodb.UpdateItem":        {{"dynamodb:UpdateItem", onTable}},
	"dynamodb.DeleteItem":        {{"dynamodb:DeleteItem", onTable}},
	"dynamodb.Query":             {{"dynamodb:Query", onErasures}},
	"dynamodb.Scan":              {{"dynamodb:Scan", onTable}},
	"dynamodb.BatchGetItem":      {{"dynamodb:BatchGetItem", onTable}},
	"dynamodb.BatchWriteItem":    {{"dynamodb:BatchWriteItem", onTable}},
	// Secrets Manager: GetSecretValue authorizes as
	// secretsmanager:GetSecretValue on the secret, "Actions, resources, and
	// condition keys for AWS Secrets Manager",
	// https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssecretsmanager.html.
	// The resolver's only secret is the CloudFront key (Cdn=on).
	"secretsmanager.GetSecretValue": {{"secretsmanager:GetSecretValue", onSecret}},
	// CloudFront: "Actions, resources, and condition keys for Amazon
	// CloudFront", https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudfront.html:
	// each invalidation call authorizes as the action of its own name, on
	// the distribution.
	"cloudfront.CreateInvalidation": {{"cloudfront:CreateInvalidation", onDistribution}},
	"cloudfront.GetInvalidation":    {{"cloudfront:GetInvalidation", onDistribution}},
}

// sseKMSActions are the KMS actions an S3 operation needs of its caller
// when the bucket encrypts with SSE-KMS (the template's KmsKeyArn). They are
// not calls the code makes to KMS: S3 makes them, on the caller's behalf
// and with the caller's permissions, so they are added to the S3 calls the
// code makes rather than found as SDK calls of kms.
//   - PutObject and CreateMultipartUpload encrypt a new object:
//     kms:GenerateDataKey; UploadPart needs kms:Decrypt as well ("Multipart
//     upload API and permissions",
//     https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html#mpuAndPermissions;
//     "Permissions" in
//     https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateMultipartUpload.html).
//   - GetObject returns the object's data: kms:Decrypt ("Using server-side
//     encryption with AWS KMS keys (SSE-KMS)",
//     https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html).
//     The resolver's presigned GET is authorized as the resolver, its
//     signer (https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-presigned-url.html),
//     and sdkOperation reads PresignGetObject as s3.GetObject.
//
// HeadObject, CompleteMultipartUpload, ListParts, the aborts, the
// listings and the deletes read or write no object data and need none.
var sseKMSActions = map[string][]iamAction{
	"s3.PutObject":             {{"kms:GenerateDataKey", onKey}},
	"s3.CreateMultipartUpload": {{"kms:GenerateDataKey", onKey}},
	"s3.UploadPart":            {{"kms:Decrypt", onKey}},
	"s3.GetObject":             {{"kms:Decrypt", onKey}},
}

// versionedActions: a request that names a version (versionId) is
// authorized as this action instead (same pages: "GetObject (with a
// versionId specified)"). A call whose VersionId may be nil can be either.
var versionedActions = map[string]iamAction{
	"s3.GetObject":    {"s3:GetObjectVersion", onObjects},
	"s3.HeadObject":   {"s3:GetObjectVersion", onObjects},
	"s3.DeleteObject": {"s3:DeleteObjectVersion", onObjects},
}

// The SDK packages whose clients make the calls, by the service name the
// operations above use.
var sdkServices = map[string]string{
	"github.com/aws/aws-sdk-go-v2/service/s3":             "s3",
	"github.com/aws/aws-sdk-go-v2/service/dynamodb":       "dynamodb",
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager": "secretsmanager",
	"github.com/aws/aws-sdk-go-v2/service/cloudfront":     "cloudfront",
}

// A component's program: the main package, the function that is the
// component's entry point there, and the functions that belong to another
// component (not followed).
type componentEntry struct {
	main  string // import path of the command
	entry string // a function of the main package
	cut   []string
}

// componentEntries: "offload-agent audit" is the audit (auditCommand),
// "offload-agent erase" the eraser (eraseCommand); everything else
// offload-agent does is the agent (doctor included: it checks the agent's
// own grants; prune too: offload-prune.service runs it with the agent's
// credentials); offload-resolver is the resolver, under Lambda and as a
// plain HTTP server. The audit's and the eraser's graphs reach the table of
// subcommands (for help and suggestions), so the other components' commands
// are cut from them.
var componentEntries = map[string]componentEntry{
	templatepolicy.Agent:    {main: modulePath + "/agent/cmd/offload-agent", entry: "main", cut: []string{"auditCommand", "eraseCommand"}},
	templatepolicy.Audit:    {main: modulePath + "/agent/cmd/offload-agent", entry: "auditCommand", cut: []string{"doctorCommand", "eraseCommand", "pruneCommand"}},
	templatepolicy.Eraser:   {main: modulePath + "/agent/cmd/offload-agent", entry: "eraseCommand", cut: []string{"doctorCommand", "auditCommand", "pruneCommand"}},
	templatepolicy.Resolver: {main: modulePath + "/lambda/cmd/offload-resolver", entry: "main"},
}

const modulePath = "github.com/photosleeve/offload"

// awsCall is one place the code calls AWS (directly or through an
// interface an SDK client satisfies) and what AWS authorizes it as.
type awsCall struct {
	Op      string // "s3.HeadObject"
	Pos     string // file:line
	Actions []iamAction
}

// componentCalls returns, for each component, the AWS calls its code can
// reach. It type-checks the module's packages (the SDK and the standard
// library come from the build's export data, as "go list -export" leaves
// them), builds a call graph over them, and walks it from each component's
// entry point:
//   - any reference to a function or method (a call, or a method value
//     handed on) is an edge, so a function passed as a value counts;
//   - a call of an interface method goes to every type of the program that
//     satisfies the interface, the SDK's clients included (the resolver's
//     presigner, offload.ItemGetter);
//   - package-level initializers run, and the standard library's HTTP
//     server calls http.Handler.ServeHTTP on what it serves.
//
// A call site of the SDK that no component reaches fails the test, so a
// path this walk cannot see shows up instead of hiding a grant.
func componentCalls(t *testing.T) map[string][]awsCall {
	t.Helper()
	prog := loadProgram(t)
	out := map[string][]awsCall{}
	reached := map[*callSite]bool{}
	for name, e := range componentEntries {
		calls, sites := prog.reach(t, e)
		out[name] = calls
		for s := range sites {
			reached[s] = true
		}
	}
	for _, s := range prog.sdkSites() {
		if !reached[s] {
			t.Errorf("%s: an AWS call (%s) that no component's entry point reaches; the call graph misses a path, or the code is dead", s.pos, s.fn.FullName())
		}
	}
	return out
}

// program is the module's packages, type-checked, with the references each
// function makes.
type program struct {
	wd    string // positions are shown relative to it
	fset  *token.FileSet
	pkgs  map[string]*types.Package // ours, by import path
	deps  map[string][]string       // ours: the module packages each imports (transitively)
	funcs map[*types.Func]*funcNode
	inits map[string]*funcNode // per package: package-level initializers
	sdk   map[string]*types.Package
}

// funcNode is one function body (function literals inside it included).
type funcNode struct {
	pkg   string
	sites []*callSite
}

// callSite is one reference to a function or method.
type callSite struct {
	fn   *types.Func
	call *ast.CallExpr // the call it is the callee of, or nil for a method value
	info *types.Info
	pos  string
}

func loadProgram(t *testing.T) *program {
	t.Helper()
	mains := []string{}
	for _, e := range componentEntries {
		if !slices.Contains(mains, e.main) {
			mains = append(mains, e.main)
		}
	}
	slices.Sort(mains)
	cmd := exec.Command("go", append([]string{"list", "-deps", "-export", "-json=ImportPath,Dir,GoFiles,CgoFiles,Export,Imports"}, mains...)...)
	cmd.Stderr = os.Stderr
	listing, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	type listed struct {
		ImportPath, Dir, Export string
		GoFiles, CgoFiles       []string
		Imports                 []string
	}
	var ours []listed // in dependency order, as go list -deps prints them
	exports := map[string]string{}
	dec := json.NewDecoder(strings.NewReader(string(listing)))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		exports[p.ImportPath] = p.Export
		if p.ImportPath == modulePath || strings.HasPrefix(p.ImportPath, modulePath+"/") {
			if len(p.CgoFiles) > 0 {
				t.Fatalf("%s has cgo files; this check reads GoFiles only", p.ImportPath)
			}
			ours = append(ours, p)
		}
	}

	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	prog := &program{wd: wd, fset: token.NewFileSet(), pkgs: map[string]*types.Package{}, deps: map[string][]string{},
		funcs: map[*types.Func]*funcNode{}, inits: map[string]*funcNode{}, sdk: map[string]*types.Package{}}
	gc := importer.ForCompiler(prog.fset, "gc", func(path string) (io.ReadCloser, error) {
		if exports[path] == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(exports[path])
	})
	imp := importerFunc(func(path string) (*types.Package, error) {
		if p, ok := prog.pkgs[path]; ok {
			return p, nil
		}
		p, err := gc.Import(path)
		if err == nil && sdkServices[path] != "" {
			prog.sdk[path] = p
		}
		return p, err
	})
	for _, p := range ours {
		var files []*ast.File
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(prog.fset, filepath.Join(p.Dir, name), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		info := &types.Info{Defs: map[*ast.Ident]types.Object{}, Uses: map[*ast.Ident]types.Object{}, Types: map[ast.Expr]types.TypeAndValue{}}
		pkg, err := (&types.Config{Importer: imp}).Check(p.ImportPath, prog.fset, files, info)
		if err != nil {
			t.Fatalf("type-check %s: %v", p.ImportPath, err)
		}
		prog.pkgs[p.ImportPath] = pkg
		deps := []string{p.ImportPath}
		for _, i := range p.Imports {
			for _, d := range prog.deps[i] {
				if !slices.Contains(deps, d) {
					deps = append(deps, d)
				}
			}
		}
		prog.deps[p.ImportPath] = deps
		prog.inits[p.ImportPath] = &funcNode{pkg: p.ImportPath}
		for _, f := range files {
			for _, d := range f.Decls {
				switch d := d.(type) {
				case *ast.FuncDecl:
					fn := info.Defs[d.Name].(*types.Func)
					node := &funcNode{pkg: p.ImportPath}
					if d.Name.Name == "init" && d.Recv == nil {
						node = prog.inits[p.ImportPath] // init functions run, like initializers
					} else {
						prog.funcs[fn] = node
					}
					prog.collect(node, d.Body, info)
				case *ast.GenDecl:
					if d.Tok == token.VAR {
						prog.collect(prog.inits[p.ImportPath], d, info)
					}
				}
			}
		}
	}
	for _, path := range []string{"github.com/aws/aws-sdk-go-v2/service/s3", "github.com/aws/aws-sdk-go-v2/service/dynamodb"} {
		if prog.sdk[path] == nil {
			t.Fatalf("the components do not import %s; this check no longer sees their calls", path)
		}
	}
	return prog
}

type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }

// collect records every function or method n refers to.
func (prog *program) collect(node *funcNode, n ast.Node, info *types.Info) {
	if n == nil {
		return
	}
	callee := map[*ast.Ident]*ast.CallExpr{}
	ast.Inspect(n, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok {
			switch f := ast.Unparen(call.Fun).(type) {
			case *ast.Ident:
				callee[f] = call
			case *ast.SelectorExpr:
				callee[f.Sel] = call
			case *ast.IndexExpr: // a generic function, instantiated
				if id, ok := f.X.(*ast.Ident); ok {
					callee[id] = call
				}
			}
		}
		id, ok := n.(*ast.Ident)
		if !ok {
			return true
		}
		fn, ok := info.Uses[id].(*types.Func)
		if !ok {
			return true
		}
		node.sites = append(node.sites, &callSite{fn: fn.Origin(), call: callee[id], info: info, pos: prog.position(id.Pos())})
		return true
	})
}

func (prog *program) position(p token.Pos) string {
	pos := prog.fset.Position(p)
	if rel, err := filepath.Rel(prog.wd, pos.Filename); err == nil {
		pos.Filename = rel
	}
	return fmt.Sprintf("%s:%d", pos.Filename, pos.Line)
}

// ours reports whether fn is declared in the module.
func ours(fn *types.Func) bool {
	return fn.Pkg() != nil && (fn.Pkg().Path() == modulePath || strings.HasPrefix(fn.Pkg().Path(), modulePath+"/"))
}

// sdkOperation returns the operation ("s3.GetObject") that calling fn
// sends: a method of an SDK client or presign client whose input is the
// operation's *<Op>Input, or a New<Op>Paginator, whose pages each send one.
func sdkOperation(fn *types.Func) (string, bool) {
	if fn.Pkg() == nil || sdkServices[fn.Pkg().Path()] == "" {
		return "", false
	}
	service := sdkServices[fn.Pkg().Path()]
	sig := fn.Signature()
	if sig.Recv() == nil {
		op, ok := strings.CutPrefix(fn.Name(), "New")
		if op, ok2 := strings.CutSuffix(op, "Paginator"); ok && ok2 {
			return service + "." + op, true
		}
		return "", false
	}
	op := strings.TrimPrefix(fn.Name(), "Presign")
	if sig.Params().Len() < 2 {
		return "", false
	}
	in, ok := sig.Params().At(1).Type().(*types.Pointer)
	if !ok {
		return "", false
	}
	named, ok := in.Elem().(*types.Named)
	if !ok || named.Obj().Pkg() != fn.Pkg() || named.Obj().Name() != op+"Input" {
		return "", false
	}
	return service + "." + op, true
}

// actionsAt is what one call of op authorizes as: its IAM actions, with the
// versioned one when the call's input literal sets VersionId (both when the
// value may be nil). An input the check cannot see counts as both.
func actionsAt(op string, s *callSite) ([]iamAction, error) {
	base, ok := operationActions[op]
	if !ok {
		return nil, fmt.Errorf("%s: the code calls %s, which operationActions does not map to IAM actions", s.pos, op)
	}
	v, versionable := versionedActions[op]
	if !versionable {
		return base, nil
	}
	switch versionID(s) {
	case "absent":
		return base, nil
	case "set":
		return []iamAction{v}, nil
	}
	return append(slices.Clone(base), v), nil
}

// versionID says how the call's input sets VersionId: "absent", "set" (to
// aws.String(...), never nil) or "maybe".
func versionID(s *callSite) string {
	if s.call == nil {
		return "maybe"
	}
	for _, arg := range s.call.Args {
		u, ok := arg.(*ast.UnaryExpr)
		if !ok || u.Op != token.AND {
			continue
		}
		lit, ok := u.X.(*ast.CompositeLit)
		if !ok || !strings.HasSuffix(types.TypeString(s.info.TypeOf(lit), nil), "Input") {
			continue
		}
		for _, e := range lit.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			if k, ok := kv.Key.(*ast.Ident); !ok || k.Name != "VersionId" {
				continue
			}
			if c, ok := kv.Value.(*ast.CallExpr); ok {
				if sel, ok := c.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "String" {
					if fn, ok := s.info.Uses[sel.Sel].(*types.Func); ok && fn.Pkg().Path() == "github.com/aws/aws-sdk-go-v2/aws" {
						return "set"
					}
				}
			}
			return "maybe"
		}
		return "absent"
	}
	return "maybe"
}

// sdkClients are the SDK types that make calls: each client and the S3
// presign client, as pointers (their methods have pointer receivers).
func (prog *program) sdkClients() []types.Type {
	var out []types.Type
	for _, p := range prog.sdk {
		for _, name := range []string{"Client", "PresignClient"} {
			if obj, ok := p.Scope().Lookup(name).(*types.TypeName); ok {
				out = append(out, types.NewPointer(obj.Type()))
			}
		}
	}
	return out
}

// implementations returns the methods an interface method may dispatch to
// in a program made of pkgs: those of every named type declared there
// (and its pointer) that satisfies the interface, and the SDK clients'.
func (prog *program) implementations(m *types.Func, pkgs []string) []*types.Func {
	iface, ok := m.Signature().Recv().Type().Underlying().(*types.Interface)
	if !ok {
		return nil
	}
	var candidates []types.Type
	for _, path := range pkgs {
		scope := prog.pkgs[path].Scope()
		for _, name := range scope.Names() {
			tn, ok := scope.Lookup(name).(*types.TypeName)
			if !ok || tn.IsAlias() || types.IsInterface(tn.Type()) {
				continue
			}
			if n, ok := tn.Type().(*types.Named); ok && n.TypeParams().Len() > 0 {
				continue
			}
			candidates = append(candidates, tn.Type(), types.NewPointer(tn.Type()))
		}
	}
	candidates = append(candidates, prog.sdkClients()...)
	var out []*types.Func
	for _, c := range candidates {
		if !types.Implements(c, iface) {
			continue
		}
		obj, _, _ := types.LookupFieldOrMethod(c, true, m.Pkg(), m.Name())
		if fn, ok := obj.(*types.Func); ok && !slices.Contains(out, fn.Origin()) {
			out = append(out, fn.Origin())
		}
	}
	return out
}

// isInterfaceMethod reports whether fn is declared by an interface.
func isInterfaceMethod(fn *types.Func) bool {
	r := fn.Signature().Recv()
	return r != nil && types.IsInterface(r.Type())
}

// reach walks the component's program from its entry point and returns
// the AWS calls it reaches, and the SDK call sites among them.
func (prog *program) reach(t *testing.T, e componentEntry) ([]awsCall, map[*callSite]bool) {
	t.Helper()
	main := prog.pkgs[e.main]
	if main == nil {
		t.Fatalf("package %s not loaded", e.main)
	}
	pkgs := prog.deps[e.main]
	cut := map[*types.Func]bool{}
	for _, name := range e.cut {
		fn, ok := main.Scope().Lookup(name).(*types.Func)
		if !ok {
			t.Fatalf("%s has no function %s", e.main, name)
		}
		cut[fn] = true
	}
	entry, ok := main.Scope().Lookup(e.entry).(*types.Func)
	if !ok {
		t.Fatalf("%s has no function %s", e.main, e.entry)
	}

	var calls []awsCall
	sites := map[*callSite]bool{}
	seen := map[*funcNode]bool{}
	impls := map[*types.Func][]*types.Func{}
	resolving := map[*types.Func]bool{} // an interface method being resolved (a type may embed the interface)
	var queue []*funcNode
	var visit func(fn *types.Func, from *callSite)
	visit = func(fn *types.Func, from *callSite) {
		if op, ok := sdkOperation(fn); ok {
			if from == nil {
				t.Errorf("%s is reached with no call site to read", fn.FullName())
				return
			}
			actions, err := actionsAt(op, from)
			if err != nil {
				t.Error(err)
			}
			calls = append(calls, awsCall{Op: op, Pos: from.pos, Actions: actions})
			sites[from] = true
			return
		}
		if cut[fn] {
			return
		}
		if isInterfaceMethod(fn) {
			// Resolved at every call site: the site is what an SDK
			// client's operation is read from.
			if resolving[fn] {
				return
			}
			resolving[fn] = true
			defer delete(resolving, fn)
			if _, ok := impls[fn]; !ok {
				impls[fn] = prog.implementations(fn, pkgs)
			}
			for _, impl := range impls[fn] {
				visit(impl, from)
			}
			return
		}
		if node := prog.funcs[fn]; node != nil && slices.Contains(pkgs, node.pkg) && !seen[node] {
			seen[node] = true
			queue = append(queue, node)
		}
	}
	for _, path := range pkgs {
		seen[prog.inits[path]] = true
		queue = append(queue, prog.inits[path])
	}
	visit(entry, nil)
	if h := lookupMethod(t, prog, "net/http", "Handler", "ServeHTTP"); h != nil {
		visit(h, nil)
	}
	for len(queue) > 0 {
		node := queue[0]
		queue = queue[1:]
		for _, s := range node.sites {
			if ours(s.fn) || isInterfaceMethod(s.fn) {
				visit(s.fn, s)
				continue
			}
			if _, ok := sdkOperation(s.fn); ok {
				visit(s.fn, s)
			}
		}
	}
	return calls, sites
}

// lookupMethod finds an interface's method in a package the program
// imports, or nil when no package of it does.
func lookupMethod(t *testing.T, prog *program, pkgPath, typ, method string) *types.Func {
	t.Helper()
	for _, p := range prog.pkgs {
		for _, imp := range p.Imports() {
			if imp.Path() != pkgPath {
				continue
			}
			tn, ok := imp.Scope().Lookup(typ).(*types.TypeName)
			if !ok {
				t.Fatalf("%s has no type %s", pkgPath, typ)
			}
			obj, _, _ := types.LookupFieldOrMethod(tn.Type(), false, imp, method)
			if fn, ok := obj.(*types.Func); ok {
				return fn
			}
		}
	}
	return nil
}

// sdkSites returns every call site in the components' packages that sends
// an AWS request: a direct SDK call, or a call of an interface method an
// SDK client satisfies.
func (prog *program) sdkSites() []*callSite {
	var all []string
	for _, e := range componentEntries {
		for _, p := range prog.deps[e.main] {
			if !slices.Contains(all, p) {
				all = append(all, p)
			}
		}
	}
	nodes := slices.Collect(maps.Values(prog.funcs))
	nodes = append(nodes, slices.Collect(maps.Values(prog.inits))...)
	var out []*callSite
	for _, node := range nodes {
		for _, s := range node.sites {
			if _, ok := sdkOperation(s.fn); ok {
				out = append(out, s)
				continue
			}
			if isInterfaceMethod(s.fn) {
				for _, impl := range prog.implementations(s.fn, all) {
					if _, ok := sdkOperation(impl); ok && s.call != nil {
						out = append(out, s)
						break
					}
				}
			}
		}
	}
	return out
}
