package offload_test

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/intrinsics"
	"github.com/awslabs/goformation/v7/schema"
	"github.com/xeipuuv/gojsonschema"

	"github.com/photosleeve/offload"
	"github.com/photosleeve/offload/infra/local/stacktest"
	"github.com/photosleeve/offload/infra/local/templatepolicy"
	"gopkg.in/yaml.v3"
)

// loadTemplate parses template.yaml with goformation, keeping references
// readable ("Ref:X", "GetAtt:X.Y", the Sub string itself) instead of
// resolving them, and returns it as plain JSON values. A Ref to a Number
// parameter is the exception: it becomes the parameter's default, as
// CloudFormation would deploy it, because goformation's typed properties
// (ReservedConcurrentExecutions, RetentionInDays) take no string.
func loadTemplate(t *testing.T) map[string]any {
	t.Helper()
	return loadTemplateWith(t, nil)
}

// loadTemplateWith is loadTemplate with parameter defaults replaced, which
// shows what a Number parameter is wired to.
func loadTemplateWith(t *testing.T, overrides map[string]any) map[string]any {
	t.Helper()
	keep := func(prefix string) intrinsics.IntrinsicHandler {
		return func(name string, input any, template any) any {
			switch v := input.(type) {
			case string:
				return prefix + v
			case []any:
				parts := make([]string, len(v))
				for i, p := range v {
					parts[i] = fmt.Sprint(p)
				}
				return prefix + strings.Join(parts, ".")
			}
			return prefix + fmt.Sprint(input)
		}
	}
	ref := func(name string, input any, template any) any {
		if p, ok := input.(string); ok && get(template, "Parameters", p, "Type") == "Number" {
			v := intrinsics.Ref(name, input, template)
			if s, ok := v.(string); ok { // a default written "20", as the SAM schema wants it
				if n, err := strconv.Atoi(s); err == nil {
					return n
				}
			}
			return v
		}
		return keep("Ref:")(name, input, template)
	}
	opts := &intrinsics.ProcessorOptions{ParameterOverrides: overrides, IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{
		"Ref": ref, "Fn::GetAtt": keep("GetAtt:"), "Fn::Sub": keep(""), "Fn::If": keepIf(keep("If:")),
	}}
	tmpl, err := goformation.OpenWithOptions("template.yaml", opts)
	if err != nil {
		t.Fatalf("goformation: %v", err)
	}
	b, err := tmpl.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// keepIf keeps an Fn::If whose branches are structures (a policy
// statement) as {"If": [condition, then, else]}, for resolveIf (not
// "Fn::If", which goformation's Template.JSON would evaluate again); one
// of plain values reads as flat, a string like the other references.
//
// An Fn::If on KmsOn between two structures reads as its "else" branch,
// the template as deployed without KmsKeyArn: that one is the bucket's
// encryption rule, whose typed properties cannot hold {"If": ...}.
// TestTemplateKms reads its "then" branch from the YAML itself.
func keepIf(flat intrinsics.IntrinsicHandler) intrinsics.IntrinsicHandler {
	return func(name string, input any, template any) any {
		if args, ok := input.([]any); ok {
			if _, typed := args[len(args)-1].(map[string]any); len(args) == 3 && args[0] == "KmsOn" && typed {
				return args[2]
			}
			for _, a := range args {
				switch a.(type) {
				case map[string]any, []any:
					return map[string]any{"If": args}
				}
			}
		}
		return flat(name, input, template)
	}
}

// resolveIf replaces each structured Fn::If in v (see keepIf) by its
// branch for the conditions' values, and drops a branch that is
// AWS::NoValue from its list, as CloudFormation does. A condition not in
// conditions fails the test.
func resolveIf(t *testing.T, v any, conditions map[string]bool) any {
	t.Helper()
	const noValue = "Ref:AWS::NoValue"
	switch x := v.(type) {
	case map[string]any:
		if args, ok := x["If"].([]any); ok && len(x) == 1 && len(args) == 3 {
			on, known := conditions[fmt.Sprint(args[0])]
			if !known {
				t.Fatalf("Fn::If on condition %v, which the test does not set", args[0])
			}
			if on {
				return resolveIf(t, args[1], conditions)
			}
			return resolveIf(t, args[2], conditions)
		}
		out := map[string]any{}
		for k, c := range x {
			if r := resolveIf(t, c, conditions); r != noValue {
				out[k] = r
			}
		}
		return out
	case []any:
		out := []any{}
		for _, c := range x {
			if r := resolveIf(t, c, conditions); r != noValue {
				out = append(out, r)
			}
		}
		return out
	}
	return v
}

// get walks a path of keys (and list indexes) through JSON values.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func resource(t *testing.T, doc map[string]any, name string) map[string]any {
	t.Helper()
	r, ok := get(doc, "Resources", name).(map[string]any)
	if !ok {
		t.Fatalf("template has no resource %s", name)
	}
	return r
}

func TestTemplateMatchesSAMSchema(t *testing.T) {
	doc := loadTemplate(t)
	// goformation evaluates each condition to a boolean before we see it,
	// which the schema (wanting the intrinsic object) refuses; the
	// condition's use is checked in TestTemplateSecurity instead.
	if _, ok := get(doc, "Conditions", "HasBucketName").(bool); !ok {
		t.Errorf("condition HasBucketName missing")
	}
	delete(doc, "Conditions")
	// goformation types a parameter's MinValue and MaxValue as numbers (as
	// CloudFormation documents them) while its bundled schema wants
	// strings; give the schema what it wants.
	params, _ := doc["Parameters"].(map[string]any)
	for _, p := range params {
		for _, k := range []string{"MinValue", "MaxValue"} {
			if v, ok := get(p, k).(float64); ok {
				p.(map[string]any)[k] = strconv.FormatFloat(v, 'f', -1, 64)
			}
		}
	}
	res, err := gojsonschema.Validate(gojsonschema.NewStringLoader(schema.SamSchema), gojsonschema.NewGoLoader(doc))
	if err != nil {
		t.Fatalf("schema validation: %v", err)
	}
	for _, e := range res.Errors() {
		t.Errorf("SAM schema: %s", e)
	}
}

// jsonEqual checks that got, as JSON, is the value want spells (key order
// and spacing aside).
func jsonEqual(t *testing.T, what string, got any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: the expected value does not parse: %v", what, err)
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Errorf("%s = %s; want %s", what, gb, wb)
	}
}

// TestTemplateSecurity checks each property docs/deploy-aws.md's "What the template creates"
// lists, with the exact values it names.
func TestTemplateSecurity(t *testing.T) {
	doc := loadTemplate(t)

	bucket := resource(t, doc, "OriginalsBucket")
	b := func(k string) any { return get(bucket, "Properties", k) }
	jsonEqual(t, "bucket PublicAccessBlockConfiguration", b("PublicAccessBlockConfiguration"),
		`{"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true}`)
	jsonEqual(t, "bucket OwnershipControls", b("OwnershipControls"), `{"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}`)
	// SSE-S3 unless KmsKeyArn is set; then SSE-KMS with that key and an S3
	// Bucket Key (TestTemplateKms).
	jsonEqual(t, "bucket BucketEncryption", b("BucketEncryption"),
		`{"ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}`)
	jsonEqual(t, "bucket VersioningConfiguration", b("VersioningConfiguration"), `{"Status": "Enabled"}`)
	// The storage rules after it: TestTemplateLifecycle.
	jsonEqual(t, "bucket lifecycle rule 1", get(b("LifecycleConfiguration"), "Rules", 0),
		`{"Id": "AbortIncompleteMultipartUploads", "Status": "Enabled", "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}`)
	// The name is the parameter's when given, else CloudFormation's.
	if got := b("BucketName"); got != "If:HasBucketName.Ref:BucketName.Ref:AWS::NoValue" {
		t.Errorf("bucket BucketName = %v; want the BucketName parameter when set", got)
	}
	for _, name := range []string{"OriginalsBucket", "LedgerTable"} {
		r := resource(t, doc, name)
		if r["DeletionPolicy"] != "Retain" || r["UpdateReplacePolicy"] != "Retain" {
			t.Errorf("%s: DeletionPolicy %v, UpdateReplacePolicy %v; want both Retain", name, r["DeletionPolicy"], r["UpdateReplacePolicy"])
		}
	}

	// The bucket policy: the TLS rule here, the conditional-write guard in
	// TestTemplateConditionalWriteGuard, and nothing else (with the CDN
	// off; on, TestTemplateCdnBucketPolicy).
	statements := bucketStatements(t, doc, false)
	var sids []string
	for _, st := range statements {
		sids = append(sids, fmt.Sprint(get(st, "Sid")))
	}
	if !slices.Equal(sids, []string{"DenyInsecureTransport", "DenyUnconditionalWrites"}) {
		t.Errorf("bucket policy statements %v; want DenyInsecureTransport, DenyUnconditionalWrites", sids)
	}
	if get(resource(t, doc, "OriginalsBucketPolicy"), "Properties", "Bucket") != "Ref:OriginalsBucket" {
		t.Errorf("bucket policy is not on OriginalsBucket")
	}
	jsonEqual(t, "bucket policy statement 1", get(statements, 0),
		`{"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
		  "Resource": ["GetAtt:OriginalsBucket.Arn", "${OriginalsBucket.Arn}/*"],
		  "Condition": {"Bool": {"aws:SecureTransport": "false"}}}`)

	// The attribute definitions and the index: TestTemplateErasuresIndex.
	table := maps.Clone(get(resource(t, doc, "LedgerTable"), "Properties").(map[string]any))
	delete(table, "AttributeDefinitions")
	delete(table, "GlobalSecondaryIndexes")
	jsonEqual(t, "ledger table Properties", table,
		`{"BillingMode": "PAY_PER_REQUEST",
		  "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
		  "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": true},
		  "SSESpecification": {"SSEEnabled": true},
		  "DeletionProtectionEnabled": true}`)
	if got := get(resource(t, doc, "LedgerTable"), "Properties", "KeySchema", 0, "AttributeName"); got != offload.LedgerPartitionKey {
		t.Errorf("ledger table partition key %v; the code's is %q", got, offload.LedgerPartitionKey)
	}

	fn := resource(t, doc, "ResolverFunction")
	p := func(k ...any) any { return get(fn, append([]any{"Properties"}, k...)...) }
	jsonEqual(t, "resolver", map[string]any{
		"Runtime": p("Runtime"), "Architectures": p("Architectures"), "Handler": p("Handler"),
		"MemorySize": p("MemorySize"), "Timeout": p("Timeout"), "FunctionUrlConfig": p("FunctionUrlConfig"),
		"BuildMethod": get(fn, "Metadata", "BuildMethod"),
	}, `{"Runtime": "provided.al2023", "Architectures": ["arm64"], "Handler": "bootstrap",
	     "MemorySize": 128, "Timeout": 5, "FunctionUrlConfig": {"AuthType": "NONE", "InvokeMode": "BUFFERED"},
	     "BuildMethod": "makefile"}`)

	// Every variable the resolver reads is set.
	src, _ := os.ReadFile("lambda/cmd/offload-resolver/main.go")
	vars, _ := p("Environment", "Variables").(map[string]any)
	for _, m := range regexp.MustCompile(`"(OFFLOAD_[A-Z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		name := m[1]
		if name == "OFFLOAD_LISTEN" || name == "OFFLOAD_LOG_FORMAT" || name == "OFFLOAD_S3_PATH_STYLE" {
			continue // local server and defaults that are right in Lambda
		}
		if _, ok := vars[name]; !ok {
			t.Errorf("resolver reads %s, the template does not set it", name)
		}
	}

	// The signing key never shows in the console, the CLI or events.
	jsonEqual(t, "parameter SigningKey", get(doc, "Parameters", "SigningKey", "NoEcho"), `true`)

	// Every output: the plain ones by their reference here, the two built
	// with Fn::Split and Fn::Select by TestTemplateResolverBase and
	// TestTemplateAgentEnv, which evaluate them.
	outputs, _ := doc["Outputs"].(map[string]any)
	values := map[string]any{}
	for name, o := range outputs {
		values[name] = get(o, "Value")
		if name == "ResolverBase" || name == "AgentEnv" {
			values[name] = "evaluated"
		}
	}
	jsonEqual(t, "Outputs", values, `{"ResolverUrl": "GetAtt:ResolverFunctionUrl.FunctionUrl",
		"ResolverBase": "evaluated", "AgentEnv": "evaluated",
		"BucketName": "Ref:OriginalsBucket", "TableName": "Ref:LedgerTable", "CdnDistributionId": "Ref:CdnDistribution",
		"AgentPolicyArn": "Ref:AgentPolicy", "AuditPolicyArn": "Ref:AuditPolicy", "EraserPolicyArn": "Ref:EraserPolicy",
		"HostInstanceProfile": "Ref:AgentInstanceProfile", "HostInstanceProfileArn": "GetAtt:AgentInstanceProfile.Arn",
		"CdnDomain": "GetAtt:CdnDistribution.DomainName", "CdnKeyPairId": "Ref:CdnKey", "CdnKeyGroupId": "Ref:CdnKeyGroup"}`)
}

// TestTemplateLifecycle: the bucket's lifecycle rules, each with exactly
// its properties, and the parameters that turn them on.
//   - Incomplete multipart uploads expire after 7 days, always.
//   - StorageTransition (none by default) moves originals under the key
//     prefix to INTELLIGENT_TIERING or GLACIER_IR StorageTransitionDays
//     after upload, only those over 128 KiB: smaller ones would be billed
//     as 128 KiB in Glacier IR, are never tiered in Intelligent-Tiering,
//     and each transition is a request billed.
//   - Noncurrent versions never expire unless NoncurrentVersionExpiration
//     is on: they exist only after a delete or an overwrite, and are then
//     the only copy of an original (the ledger's version, which the
//     resolver still presigns).
//
// Each rule is always in the template and only its Status follows the
// parameters, so a rule turned off stays a valid rule.
func TestTemplateLifecycle(t *testing.T) {
	rules := func(doc map[string]any) map[string]any {
		byID := map[string]any{}
		for _, r := range get(resource(t, doc, "OriginalsBucket"), "Properties", "LifecycleConfiguration", "Rules").([]any) {
			byID[fmt.Sprint(get(r, "Id"))] = r
		}
		return byID
	}
	got := rules(loadTemplate(t))
	if len(got) != 4 {
		t.Errorf("lifecycle rules %v; want 4", slices.Sorted(maps.Keys(got)))
	}
	jsonEqual(t, "rule AbortIncompleteMultipartUploads", got["AbortIncompleteMultipartUploads"],
		`{"Id": "AbortIncompleteMultipartUploads", "Status": "Enabled", "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}`)
	jsonEqual(t, "rule TransitionToIntelligentTiering", got["TransitionToIntelligentTiering"],
		`{"Id": "TransitionToIntelligentTiering", "Status": "If:TransitionToIntelligentTiering.Enabled.Disabled",
		  "Prefix": "Ref:KeyPrefix", "ObjectSizeGreaterThan": "131072",
		  "Transitions": [{"StorageClass": "INTELLIGENT_TIERING", "TransitionInDays": 30}]}`)
	jsonEqual(t, "rule TransitionToGlacierInstantRetrieval", got["TransitionToGlacierInstantRetrieval"],
		`{"Id": "TransitionToGlacierInstantRetrieval", "Status": "If:TransitionToGlacierIR.Enabled.Disabled",
		  "Prefix": "Ref:KeyPrefix", "ObjectSizeGreaterThan": "131072",
		  "Transitions": [{"StorageClass": "GLACIER_IR", "TransitionInDays": 30}]}`)
	jsonEqual(t, "rule ExpireNoncurrentVersions", got["ExpireNoncurrentVersions"],
		`{"Id": "ExpireNoncurrentVersions", "Status": "If:ExpireNoncurrentVersions.Enabled.Disabled",
		  "NoncurrentVersionExpiration": {"NoncurrentDays": 365}}`)
	if size := get(got["TransitionToGlacierInstantRetrieval"], "ObjectSizeGreaterThan"); size != strconv.Itoa(128<<10) {
		t.Errorf("ObjectSizeGreaterThan = %v; want 128 KiB, %d bytes", size, 128<<10)
	}

	// The day counts are the parameters', not numbers of their own.
	wired := rules(loadTemplateWith(t, map[string]any{"StorageTransitionDays": 0, "NoncurrentVersionExpirationDays": 90}))
	for _, id := range []string{"TransitionToIntelligentTiering", "TransitionToGlacierInstantRetrieval"} {
		if d := get(wired[id], "Transitions", 0, "TransitionInDays"); d != float64(0) {
			t.Errorf("%s with StorageTransitionDays=0: TransitionInDays %v; want 0", id, d)
		}
	}
	if d := get(wired["ExpireNoncurrentVersions"], "NoncurrentVersionExpiration", "NoncurrentDays"); d != float64(90) {
		t.Errorf("ExpireNoncurrentVersions with NoncurrentVersionExpirationDays=90: NoncurrentDays %v; want 90", d)
	}

	// The parameters: defaults, and what CloudFormation accepts.
	doc := loadTemplate(t)
	for name, want := range map[string]string{
		"StorageTransition":               `{"Type": "String", "Default": "none", "AllowedValues": ["none", "intelligent-tiering", "glacier-ir"]}`,
		"StorageTransitionDays":           `{"Type": "Number", "Default": "30", "MinValue": 0, "MaxValue": 36500}`,
		"NoncurrentVersionExpiration":     `{"Type": "String", "Default": "never", "AllowedValues": ["never", "on"]}`,
		"NoncurrentVersionExpirationDays": `{"Type": "Number", "Default": "365", "MinValue": 1, "MaxValue": 36500}`,
	} {
		p, ok := get(doc, "Parameters", name).(map[string]any)
		if !ok {
			t.Errorf("no parameter %s", name)
			continue
		}
		p = maps.Clone(p)
		if p["Description"] == nil {
			t.Errorf("parameter %s has no Description", name)
		}
		delete(p, "Description")
		delete(p, "ConstraintDescription")
		jsonEqual(t, "parameter "+name, p, want)
	}

	// Which rule each parameter value turns on.
	raw, err := os.ReadFile("template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		params map[string]string
		on     []string
	}{
		{nil, nil},
		{map[string]string{"StorageTransition": "intelligent-tiering"}, []string{"TransitionToIntelligentTiering"}},
		{map[string]string{"StorageTransition": "glacier-ir"}, []string{"TransitionToGlacierIR"}},
		{map[string]string{"NoncurrentVersionExpiration": "on"}, []string{"ExpireNoncurrentVersions"}},
	} {
		for _, cond := range []string{"TransitionToIntelligentTiering", "TransitionToGlacierIR", "ExpireNoncurrentVersions"} {
			on, err := templatepolicy.Condition(raw, cond, deployedStack(tt.params))
			if err != nil {
				t.Errorf("condition %s: %v", cond, err)
				continue
			}
			if want := slices.Contains(tt.on, cond); on != want {
				t.Errorf("parameters %v: condition %s = %v; want %v", tt.params, cond, on, want)
			}
		}
	}
}

// TestTemplateErasuresIndex: the ledger table has the sparse index
// "erasures" the hosts query for new tombstones, keyed exactly on the
// attributes the code writes, keys only (a host needs the key, nothing
// else), and no throughput of its own: the table is PAY_PER_REQUEST and
// an index inherits its capacity mode.
func TestTemplateErasuresIndex(t *testing.T) {
	props := get(resource(t, loadTemplate(t), "LedgerTable"), "Properties")
	jsonEqual(t, "ledger table AttributeDefinitions", get(props, "AttributeDefinitions"), fmt.Sprintf(
		`[{"AttributeName": %q, "AttributeType": "S"},
		  {"AttributeName": %q, "AttributeType": "S"},
		  {"AttributeName": %q, "AttributeType": "S"}]`,
		offload.LedgerPartitionKey, offload.ErasedInAttr, offload.ErasedAtAttr))
	jsonEqual(t, "ledger table GlobalSecondaryIndexes", get(props, "GlobalSecondaryIndexes"), fmt.Sprintf(
		`[{"IndexName": %q,
		   "KeySchema": [{"AttributeName": %q, "KeyType": "HASH"}, {"AttributeName": %q, "KeyType": "RANGE"}],
		   "Projection": {"ProjectionType": "KEYS_ONLY"}}]`,
		offload.ErasuresIndex, offload.ErasedInAttr, offload.ErasedAtAttr))
	if got := get(props, "BillingMode"); got != "PAY_PER_REQUEST" {
		t.Errorf("ledger table BillingMode %v; an index without ProvisionedThroughput needs PAY_PER_REQUEST", got)
	}
}

// TestTemplateConditionalWriteGuard: the bucket policy carries AWS's guard
// for conditional writes (a Deny of s3:PutObject without If-None-Match,
// multipart's header-less calls exempt), for every principal and every
// object, and the agent sends If-None-Match on each of its writes that the
// guard judges, so the guard can never stop it.
func TestTemplateConditionalWriteGuard(t *testing.T) {
	doc := loadTemplate(t)
	statements, _ := get(resource(t, doc, "OriginalsBucketPolicy"), "Properties", "PolicyDocument", "Statement").([]any)
	var st map[string]any
	for _, s := range statements {
		if get(s, "Sid") == "DenyUnconditionalWrites" {
			st, _ = s.(map[string]any)
		}
	}
	if st == nil {
		t.Fatalf("bucket policy has no DenyUnconditionalWrites statement: %v", statements)
	}
	if get(st, "Effect") != "Deny" || get(st, "Principal") != "*" {
		t.Errorf("guard: want a Deny for Principal *: %v", st)
	}
	if a := strList(st["Action"]); len(a) != 1 || a[0] != "s3:PutObject" {
		t.Errorf("guard: Action %v; want exactly s3:PutObject (which CompleteMultipartUpload and CopyObject authorize as)", a)
	}
	if r := strList(st["Resource"]); len(r) != 1 || r[0] != "${OriginalsBucket.Arn}/*" {
		t.Errorf("guard: Resource %v; want every object of the bucket", r)
	}
	cond, _ := st["Condition"].(map[string]any)
	want := map[string]map[string]any{
		"Null": {"s3:if-none-match": "true"},           // the header is absent
		"Bool": {"s3:ObjectCreationOperation": "true"}, // and the call creates the object
	}
	if len(cond) != len(want) {
		t.Errorf("guard: Condition %v; want exactly %v", cond, want)
	}
	for op, keys := range want {
		got, _ := cond[op].(map[string]any)
		if len(got) != len(keys) {
			t.Errorf("guard: Condition.%s %v; want %v", op, got, keys)
		}
		for k, v := range keys {
			if got[k] != v {
				t.Errorf("guard: Condition.%s.%s = %v; want %v", op, k, got[k], v)
			}
		}
	}

	// The agent's side: both calls the guard judges carry IfNoneMatch "*",
	// and the agent makes no call the guard refuses outright (CopyObject,
	// UploadPartCopy).
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "agent/s3store.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]int{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		switch sel.Sel.Name {
		case "CopyObject", "UploadPartCopy":
			t.Errorf("agent/s3store.go:%d calls %s, which the guard refuses", fset.Position(call.Pos()).Line, sel.Sel.Name)
		case "PutObject", "CompleteMultipartUpload":
			found[sel.Sel.Name]++
			if !sendsIfNoneMatchStar(call) {
				t.Errorf("agent/s3store.go:%d: %s without IfNoneMatch: aws.String(\"*\"); the bucket policy would refuse it", fset.Position(call.Pos()).Line, sel.Sel.Name)
			}
		}
		return true
	})
	for _, name := range []string{"PutObject", "CompleteMultipartUpload"} {
		if found[name] == 0 {
			t.Errorf("agent/s3store.go: no %s call found; this check no longer sees the agent's writes", name)
		}
	}
}

// sendsIfNoneMatchStar reports whether a call's input literal sets
// IfNoneMatch to aws.String("*").
func sendsIfNoneMatchStar(call *ast.CallExpr) bool {
	for _, arg := range call.Args {
		u, ok := arg.(*ast.UnaryExpr)
		if !ok {
			continue
		}
		lit, ok := u.X.(*ast.CompositeLit)
		if !ok {
			continue
		}
		for _, e := range lit.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			if k, ok := kv.Key.(*ast.Ident); !ok || k.Name != "IfNoneMatch" {
				continue
			}
			v, ok := kv.Value.(*ast.CallExpr)
			if !ok || len(v.Args) != 1 {
				return false
			}
			s, ok := v.Args[0].(*ast.BasicLit)
			return ok && s.Value == `"*"`
		}
	}
	return false
}

// TestTemplateResolverLimits: the public Function URL has reserved
// concurrency and its log a retention, both parameters with sane defaults
// wired to the resources; the presigned URL's life is bounded.
func TestTemplateResolverLimits(t *testing.T) {
	doc := loadTemplate(t)
	param := func(name string) map[string]any {
		t.Helper()
		p, ok := get(doc, "Parameters", name).(map[string]any)
		if !ok {
			t.Fatalf("template has no parameter %s", name)
		}
		return p
	}

	rc := param("ReservedConcurrency")
	def, _ := strconv.Atoi(fmt.Sprint(rc["Default"]))
	if rc["Type"] != "Number" || def < 1 || def > 100 || get(rc, "MinValue") != 1.0 || get(rc, "MaxValue") == nil {
		t.Errorf("ReservedConcurrency: %v; want a Number, default between 1 and 100, MinValue 1 (0 throttles everything), a MaxValue", rc)
	}
	fn := resource(t, doc, "ResolverFunction")
	if got := get(fn, "Properties", "ReservedConcurrentExecutions"); got != float64(def) {
		t.Errorf("resolver: ReservedConcurrentExecutions %v; want the ReservedConcurrency default %d", got, def)
	}

	days := param("LogRetentionDays")
	// What CloudFormation accepts for RetentionInDays.
	valid := map[string]bool{}
	for _, d := range []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653} {
		valid[strconv.Itoa(d)] = true
	}
	allowed := strList(days["AllowedValues"])
	for _, v := range allowed {
		if !valid[v] {
			t.Errorf("LogRetentionDays allows %s, which CloudFormation refuses", v)
		}
	}
	if !valid[fmt.Sprint(days["Default"])] || !slices.Contains(allowed, fmt.Sprint(days["Default"])) {
		t.Errorf("LogRetentionDays: default %v is not an allowed retention", days["Default"])
	}
	lg := resource(t, doc, "ResolverLogGroup")
	if lg["Type"] != "AWS::Logs::LogGroup" || get(lg, "Properties", "LogGroupName") != "/aws/lambda/${ResolverFunction}" {
		t.Errorf("ResolverLogGroup: want AWS::Logs::LogGroup named /aws/lambda/${ResolverFunction} (the group Lambda writes to): %v", lg)
	}
	if got := fmt.Sprint(get(lg, "Properties", "RetentionInDays")); got != fmt.Sprint(days["Default"]) {
		t.Errorf("ResolverLogGroup: RetentionInDays %s; want the LogRetentionDays default %v", got, days["Default"])
	}

	// Wired to the parameters, not equal to them by chance.
	over := loadTemplateWith(t, map[string]any{"ReservedConcurrency": 7, "LogRetentionDays": 14})
	if got := get(resource(t, over, "ResolverFunction"), "Properties", "ReservedConcurrentExecutions"); got != 7.0 {
		t.Errorf("with ReservedConcurrency=7, ReservedConcurrentExecutions is %v", got)
	}
	if got := get(resource(t, over, "ResolverLogGroup"), "Properties", "RetentionInDays"); got != 14.0 {
		t.Errorf("with LogRetentionDays=14, RetentionInDays is %v", got)
	}

	// PresignExpiry: whole minutes, 1m to 60m; every value it lets through
	// is a duration the resolver takes.
	pe := param("PresignExpiry")
	pattern, _ := pe["AllowedPattern"].(string)
	re, err := regexp.Compile(pattern)
	if err != nil || pattern == "" {
		t.Fatalf("PresignExpiry: AllowedPattern %q: %v", pattern, err)
	}
	for v, want := range map[string]bool{
		"1m": true, "15m": true, "59m": true, "60m": true,
		"": false, "0m": false, "61m": false, "90m": false, "1h": false, "30s": false, "15": false, "015m": false, "7d": false, "168h": false, "15m ": false,
	} {
		if got := re.MatchString(v); got != want {
			t.Errorf("PresignExpiry pattern %q on %q: %v; want %v", pattern, v, got, want)
		}
	}
	for m := 0; m <= 61; m++ {
		v := strconv.Itoa(m) + "m"
		if re.MatchString(v) {
			if d, err := time.ParseDuration(v); err != nil || d < time.Minute || d > time.Hour {
				t.Errorf("PresignExpiry allows %q (%v, %v)", v, d, err)
			}
		}
	}
	if !re.MatchString(fmt.Sprint(pe["Default"])) {
		t.Errorf("PresignExpiry: default %v does not match its own pattern", pe["Default"])
	}
	if pe["ConstraintDescription"] == nil {
		t.Errorf("PresignExpiry: no ConstraintDescription to tell a user what is allowed")
	}
}

// TestTemplateKms: KmsKeyArn is empty by default, takes a key's full ARN
// and nothing else, and with it set the bucket encrypts with that key and
// an S3 Bucket Key.
func TestTemplateKms(t *testing.T) {
	doc := loadTemplate(t)
	p, _ := get(doc, "Parameters", "KmsKeyArn").(map[string]any)
	if p == nil || p["Default"] != "" {
		t.Fatalf("parameter KmsKeyArn = %v; want one whose Default is \"\" (SSE-S3, no KMS)", p)
	}
	re := regexp.MustCompile(fmt.Sprint(p["AllowedPattern"]))
	for v, want := range map[string]bool{
		"": true,
		"arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab":     true,
		"arn:aws:kms:eu-west-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab":     true, // a multi-Region key
		"arn:aws-cn:kms:cn-north-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab": true,
		"arn:aws:kms:eu-west-1:123456789012:alias/site":                                   false, // an alias grants nothing in IAM
		"1234abcd-12ab-34cd-56ef-1234567890ab":                                            false,
		"create":                                                                          false,
	} {
		if got := re.MatchString(v); got != want {
			t.Errorf("KmsKeyArn %q: accepted %v; want %v", v, got, want)
		}
	}
	raw, err := os.ReadFile("template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		t.Fatal(err)
	}
	var tmpl struct {
		Conditions struct {
			KmsOn yaml.Node `yaml:"KmsOn"`
		} `yaml:"Conditions"`
		Resources struct {
			OriginalsBucket struct {
				Properties struct {
					BucketEncryption struct {
						ServerSideEncryptionConfiguration []yaml.Node `yaml:"ServerSideEncryptionConfiguration"`
					} `yaml:"BucketEncryption"`
				} `yaml:"Properties"`
			} `yaml:"OriginalsBucket"`
		} `yaml:"Resources"`
	}
	if err := root.Decode(&tmpl); err != nil {
		t.Fatal(err)
	}
	if got := yamlText(t, &tmpl.Conditions.KmsOn); got != `!Not [!Equals [!Ref KmsKeyArn, ""]]` {
		t.Errorf("condition KmsOn = %s; want it true exactly when KmsKeyArn is set", got)
	}
	rules := tmpl.Resources.OriginalsBucket.Properties.BucketEncryption.ServerSideEncryptionConfiguration
	if len(rules) != 1 {
		t.Fatalf("bucket: %d encryption rules; want 1", len(rules))
	}
	want := `!If [KmsOn, {ServerSideEncryptionByDefault: {SSEAlgorithm: 'aws:kms', KMSMasterKeyID: !Ref KmsKeyArn}, BucketKeyEnabled: true}, {ServerSideEncryptionByDefault: {SSEAlgorithm: AES256}}]`
	if got := yamlText(t, &rules[0]); got != want {
		t.Errorf("bucket encryption rule:\n got %s\nwant %s", got, want)
	}
}

// TestTemplatePoliciesAreLeastPrivilege: no Allow statement anywhere has a
// wildcard action or the resource "*" (the bucket policy's TLS rule is a
// Deny of s3:*, which takes rights away and may be broad); and each
// component's policy grants exactly the IAM actions its code's AWS calls
// authorize as, found in the code by componentCalls, each on exactly its
// resource: the objects under the key prefix, the bucket (a listing of keys
// only under the key prefix), or the ledger table.
func TestTemplatePoliciesAreLeastPrivilege(t *testing.T) {
	doc := loadTemplate(t)
	var walk func(owner string, v any)
	walk = func(owner string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if eff, ok := x["Effect"]; ok && eff == "Allow" {
				for _, a := range strList(x["Action"]) {
					if strings.Contains(a, "*") {
						t.Errorf("%s: wildcard action %q", owner, a)
					}
				}
				for _, r := range strList(x["Resource"]) {
					if r == "*" || r == "arn:aws:s3:::*" {
						t.Errorf("%s: wildcard resource %q", owner, r)
					}
				}
				if x["NotAction"] != nil || x["NotResource"] != nil {
					t.Errorf("%s: NotAction/NotResource in an Allow", owner)
				}
			}
			for _, c := range x {
				walk(owner, c)
			}
		case []any:
			for _, c := range x {
				walk(owner, c)
			}
		}
	}
	resources, _ := doc["Resources"].(map[string]any)
	for name, r := range resources {
		walk(name, r)
	}

	raw, err := os.ReadFile("template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// A key prefix no default shares, so a prefix written into the
	// template instead of ${KeyPrefix} shows.
	// With Cdn=on (CdnOn), so the resolver's read of the CDN key is
	// granted; Cdn=off is checked below.
	const secretARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:offload-cdn-key-AbCdEf"
	// And with KmsKeyArn set (KmsOn), so the KMS grants are there;
	// without it, below.
	const keyARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	target := templatepolicy.Target{Bucket: "originals", KeyPrefix: "k-p/", Table: "ledger",
		Conditions:   map[string]bool{"CdnOn": true, "KmsOn": true},
		Parameters:   map[string]string{"CdnPrivateKeySecret": secretARN, "KmsKeyArn": keyARN},
		Distribution: "EDFDVBD6EXAMPLE"}
	resourceOf := map[string]string{
		onObjects:      target.BucketARN() + "/" + target.KeyPrefix + "*",
		onBucket:       target.BucketARN(),
		onTable:        target.TableARN(),
		onErasures:     target.TableARN() + "/index/" + offload.ErasuresIndex,
		onSecret:       secretARN,
		onDistribution: target.DistributionARN(),
		onKey:          keyARN,
	}
	calls := componentCalls(t)
	// With Cdn=off the resolver gets no OFFLOAD_CDN_* (TestTemplateCdnResolver),
	// so it never reads the secret, and is granted all the rest.
	off := target
	off.Conditions = nil
	offPolicy, err := templatepolicy.Policy(raw, templatepolicy.Resolver, off)
	if err != nil {
		t.Fatal(err)
	}
	if got := offPolicy.Actions(); !slices.Equal(got, []string{"dynamodb:GetItem", "s3:GetObject", "s3:GetObjectVersion"}) {
		t.Errorf("resolver with Cdn=off: granted %v; want the reads of the ledger and the originals only", got)
	}
	// Without KmsKeyArn no component is granted any KMS action.
	noKMS := target
	noKMS.Conditions = map[string]bool{"CdnOn": true}
	for _, c := range templatepolicy.Components {
		p, err := templatepolicy.Policy(raw, c, noKMS)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range p.Actions() {
			if strings.HasPrefix(a, "kms:") {
				t.Errorf("%s without KmsKeyArn: granted %s", c, a)
			}
		}
	}
	for _, c := range templatepolicy.Components {
		if c == templatepolicy.Cloudfront {
			// CloudFront's grant is for AWS's service, not for the
			// project's code; the local edge that reads with it needs
			// both of its actions (make check-grants, TestEdge*).
			continue
		}
		// What the code needs: each action, where, and the calls that need it.
		need := map[string]string{}
		why := map[string][]string{}
		for _, call := range calls[c] {
			// With KmsOn the bucket is SSE-KMS: the S3 calls that
			// encrypt or decrypt object data also need KMS actions
			// (sseKMSActions).
			for _, a := range append(slices.Clone(call.Actions), sseKMSActions[call.Op]...) {
				need[a.Action] = a.On
				why[a.Action] = append(why[a.Action], call.Op+" at "+call.Pos)
			}
		}
		if len(need) == 0 {
			t.Errorf("%s: no AWS call found in its code", c)
		}
		policy, err := templatepolicy.Policy(raw, c, target)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		granted := map[string]bool{}
		for i, s := range policy.Statement {
			if s.Effect != "Allow" {
				t.Errorf("%s statement %d: Effect %s; want Allow", c, i+1, s.Effect)
			}
			for _, a := range s.Action {
				granted[a] = true
				on, ok := need[a]
				if !ok {
					t.Errorf("%s is granted %s, which none of its calls needs", c, a)
					continue
				}
				if want := []string{resourceOf[on]}; !slices.Equal(s.Resource, want) {
					t.Errorf("%s: %s on %v; want exactly %v", c, a, s.Resource, want)
				}
				// s3:ListBucket and s3:ListBucketVersions take the
				// s3:prefix condition key; the other actions here are
				// scoped by their resource alone.
				var wantCond map[string]map[string]string
				if a == "s3:ListBucket" || a == "s3:ListBucketVersions" {
					wantCond = map[string]map[string]string{"StringLike": {"s3:prefix": target.KeyPrefix + "*"}}
				}
				// The KMS grants only for S3's requests on the caller's
				// behalf, never for a call to KMS itself.
				if strings.HasPrefix(a, "kms:") {
					wantCond = map[string]map[string]string{"StringEquals": {"kms:ViaService": templatepolicy.KMSViaS3}}
				}
				jsonEqual(t, c+": "+a+" Condition", s.Condition, mustJSON(t, wantCond))
			}
		}
		for a := range need {
			if !granted[a] {
				t.Errorf("%s needs %s (%s); the template does not grant it", c, a, strings.Join(why[a], ", "))
			}
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func strList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

// functionURL is a Function URL as GetAtt FunctionUrl gives it: the format
// Lambda documents (https://<url-id>.lambda-url.<region>.on.aws), with the
// trailing slash deployed stacks show.
const functionURL = "https://abc123def456ghi789.lambda-url.eu-west-1.on.aws/"

// deployedStack is what a stack in eu-west-1 resolves the template's
// references to, each a distinct value so that a mix-up shows.
func deployedStack(params map[string]string) templatepolicy.Stack {
	return templatepolicy.Stack{
		Parameters: params,
		Refs: map[string]string{
			"OriginalsBucket":      "offload-originalsbucket-1a2b3c4d5e6f",
			"LedgerTable":          "offload-LedgerTable-ABCDEF123456",
			"AgentPolicy":          "arn:aws:iam::123456789012:policy/offload-AgentPolicy-1QWERTY",
			"AuditPolicy":          "arn:aws:iam::123456789012:policy/offload-AuditPolicy-2ASDFGH",
			"EraserPolicy":         "arn:aws:iam::123456789012:policy/offload-EraserPolicy-4QAZWSX",
			"AgentInstanceProfile": "offload-AgentInstanceProfile-3ZXCVB",
			"AWS::Region":          "eu-west-1",
		},
		Attrs: map[string]string{
			"ResolverFunctionUrl.FunctionUrl": functionURL,
			"AgentInstanceProfile.Arn":        "arn:aws:iam::123456789012:instance-profile/offload-AgentInstanceProfile-3ZXCVB",
		},
	}
}

func evalOutputs(t *testing.T, s templatepolicy.Stack) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := templatepolicy.Outputs(raw, s)
	if err != nil {
		t.Fatalf("evaluate the outputs: %v", err)
	}
	return out
}

// TestTemplateResolverBase: ResolverBase is the resolver's Function URL
// without its trailing slash, what OFFLOAD_RESOLVER_BASE wants, built from
// the FunctionUrl attribute (not from text that happens to match).
func TestTemplateResolverBase(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{functionURL, "https://abc123def456ghi789.lambda-url.eu-west-1.on.aws"},
		// The documented format has no slash; either way the base is the same.
		{"https://abc123def456ghi789.lambda-url.eu-west-1.on.aws", "https://abc123def456ghi789.lambda-url.eu-west-1.on.aws"},
		{"https://zz9.lambda-url.us-east-2.on.aws/", "https://zz9.lambda-url.us-east-2.on.aws"},
	} {
		s := deployedStack(nil)
		s.Attrs["ResolverFunctionUrl.FunctionUrl"] = tt.url
		out := evalOutputs(t, s)
		got := out["ResolverBase"]
		if got != tt.want {
			t.Errorf("FunctionUrl %q: ResolverBase = %q; want %q", tt.url, got, tt.want)
		}
		if strings.HasSuffix(got, "/") {
			t.Errorf("FunctionUrl %q: ResolverBase %q ends in a slash", tt.url, got)
		}
		if out["ResolverUrl"] != tt.url {
			t.Errorf("ResolverUrl = %q; want the FunctionUrl itself, %q", out["ResolverUrl"], tt.url)
		}
	}
}

// TestTemplateAgentEnv: AgentEnv is one line that a shell's printf '%s\n'
// turns into agent.env lines, one KEY=VALUE for each setting the stack
// decides, each the value of the right resource. With Cdn=on it also names
// the distribution (OFFLOAD_CDN_DISTRIBUTION_ID), so that erase, reading
// agent.env, invalidates the edge's copies without being told: an erasure
// recorded done while the edge still serves the original is what a
// forgotten --cdn-distribution would give.
func TestTemplateAgentEnv(t *testing.T) {
	for _, cdn := range []bool{false, true} {
		t.Run(map[bool]string{false: "Cdn=off", true: "Cdn=on"}[cdn], func(t *testing.T) { testAgentEnv(t, cdn) })
	}
}

func testAgentEnv(t *testing.T, cdn bool) {
	s := deployedStack(nil)
	if cdn {
		s = deployedStack(map[string]string{"Cdn": "on"})
		s.Refs["CdnDistribution"] = "EDFDVBD6EXAMPLE"
		s.Refs["CdnKey"] = "K2JCJMDEHXQW5F"
		s.Refs["CdnKeyGroup"] = "4f7c1c3e-0c2b-4f67-9d0a-2f3b1e6f5a10"
		s.Attrs["CdnDistribution.DomainName"] = "d111111abcdef8.cloudfront.net"
	}
	out := evalOutputs(t, s)
	env := out["AgentEnv"]
	if env == "" || strings.ContainsAny(env, "\n\t") {
		t.Fatalf("AgentEnv = %q; want one line", env)
	}
	// As docs/deploy-aws.md pastes it: the output, unquoted, split by the shell.
	cmd := exec.Command("sh", "-c", `printf '%s\n' $AGENT_ENV`)
	cmd.Env = []string{"AGENT_ENV=" + env, "PATH=" + os.Getenv("PATH")}
	printed, err := cmd.Output()
	if err != nil {
		t.Fatalf("printf: %v", err)
	}
	got := map[string]string{}
	var keys []string
	for _, line := range strings.Split(strings.TrimSuffix(string(printed), "\n"), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || v == "" || !regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`).MatchString(k) {
			t.Errorf("AgentEnv line %q is not KEY=VALUE", line)
			continue
		}
		if _, dup := got[k]; dup {
			t.Errorf("AgentEnv names %s twice", k)
		}
		got[k] = v
		keys = append(keys, k)
	}
	want := map[string]string{
		"OFFLOAD_BUCKET":        s.Refs["OriginalsBucket"],
		"OFFLOAD_TABLE":         s.Refs["LedgerTable"],
		"AWS_REGION":            s.Refs["AWS::Region"],
		"OFFLOAD_RESOLVER_BASE": out["ResolverBase"],
	}
	wantKeys := []string{"OFFLOAD_BUCKET", "OFFLOAD_TABLE", "AWS_REGION", "OFFLOAD_RESOLVER_BASE"}
	if cdn {
		want["OFFLOAD_CDN_DISTRIBUTION_ID"] = "EDFDVBD6EXAMPLE"
		wantKeys = append(wantKeys, "OFFLOAD_CDN_DISTRIBUTION_ID")
	}
	jsonEqual(t, "AgentEnv", got, mustJSON(t, want))
	if out["BucketName"] != got["OFFLOAD_BUCKET"] || out["TableName"] != got["OFFLOAD_TABLE"] {
		t.Errorf("AgentEnv %v disagrees with the BucketName %q and TableName %q outputs", got, out["BucketName"], out["TableName"])
	}
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("AgentEnv keys %v; want %v in that order", keys, wantKeys)
	}

	// Each OFFLOAD_ key is one the code reads: the agent its bucket and
	// table, the web server (and doctor) the resolver's base. AWS_REGION is
	// the SDK's.
	readers := map[string][]string{
		"OFFLOAD_BUCKET":        {"agent/cmd/offload-agent"},
		"OFFLOAD_TABLE":         {"agent/cmd/offload-agent"},
		"OFFLOAD_RESOLVER_BASE": {"infra/lighttpd/offload.conf"},
		// erase's --cdn-distribution.
		"OFFLOAD_CDN_DISTRIBUTION_ID": {"agent/cmd/offload-agent"},
	}
	for key, paths := range readers {
		found := false
		for _, p := range paths {
			files := []string{p}
			if st, err := os.Stat(p); err == nil && st.IsDir() {
				files, _ = filepath.Glob(filepath.Join(p, "*.go"))
			}
			for _, f := range files {
				if strings.HasSuffix(f, "_test.go") {
					continue
				}
				b, _ := os.ReadFile(f)
				if strings.Contains(string(b), key) {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("AgentEnv sets %s, which nothing in %v reads", key, paths)
		}
	}
}

// TestTemplateHostRole: the web host's role exists only with HostRole=ec2;
// only EC2 may assume it; it holds AgentPolicy and nothing else; its
// instance profile holds it and nothing else, and is an output only when
// it exists.
func TestTemplateHostRole(t *testing.T) {
	doc := loadTemplate(t)
	jsonEqual(t, "parameter HostRole", get(doc, "Parameters", "HostRole"), `{"Type": "String", "Default": "none",
		"AllowedValues": ["none", "ec2"], "Description": `+mustJSON(t, get(doc, "Parameters", "HostRole", "Description"))+`}`)

	raw, err := os.ReadFile("template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for value, want := range map[string]bool{"none": false, "ec2": true} {
		on, err := templatepolicy.Condition(raw, "CreateHostRole", deployedStack(map[string]string{"HostRole": value}))
		if err != nil || on != want {
			t.Errorf("HostRole=%s: CreateHostRole = %v (%v); want %v", value, on, err, want)
		}
	}
	if on, err := templatepolicy.Condition(raw, "CreateHostRole", deployedStack(nil)); err != nil || on {
		t.Errorf("by default CreateHostRole = %v (%v); want false: no role unless asked", on, err)
	}

	// Every IAM role and instance profile of the template is this one, and
	// exists only under the condition.
	resources, _ := doc["Resources"].(map[string]any)
	for name, r := range resources {
		switch get(r, "Type") {
		case "AWS::IAM::Role", "AWS::IAM::InstanceProfile", "AWS::IAM::Policy", "AWS::IAM::RolePolicy":
			if name != "AgentHostRole" && name != "AgentInstanceProfile" {
				t.Errorf("resource %s (%v): the host role and its profile are the template's only roles", name, get(r, "Type"))
			}
			if get(r, "Condition") != "CreateHostRole" {
				t.Errorf("resource %s: Condition %v; want CreateHostRole", name, get(r, "Condition"))
			}
		}
	}
	role := resource(t, doc, "AgentHostRole")
	if role["Type"] != "AWS::IAM::Role" {
		t.Errorf("AgentHostRole is %v", role["Type"])
	}
	jsonEqual(t, "AgentHostRole trust policy", get(role, "Properties", "AssumeRolePolicyDocument"),
		`{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}`)
	props, _ := role["Properties"].(map[string]any)
	jsonEqual(t, "AgentHostRole ManagedPolicyArns", props["ManagedPolicyArns"], `["Ref:AgentPolicy"]`)
	for k := range props {
		if k != "Description" && k != "AssumeRolePolicyDocument" && k != "ManagedPolicyArns" {
			t.Errorf("AgentHostRole has %s; want only its trust policy and AgentPolicy", k)
		}
	}
	profile := resource(t, doc, "AgentInstanceProfile")
	if profile["Type"] != "AWS::IAM::InstanceProfile" {
		t.Errorf("AgentInstanceProfile is %v", profile["Type"])
	}
	jsonEqual(t, "AgentInstanceProfile Properties", profile["Properties"], `{"Roles": ["Ref:AgentHostRole"]}`)
	// Nothing else refers to the role (no policy attached to it elsewhere).
	for name, r := range resources {
		if name == "AgentInstanceProfile" {
			continue
		}
		if b, _ := json.Marshal(r); strings.Contains(string(b), "AgentHostRole") {
			t.Errorf("resource %s refers to AgentHostRole: %s", name, b)
		}
	}

	// The outputs: only when the profile exists.
	without := evalOutputs(t, deployedStack(nil))
	with := evalOutputs(t, deployedStack(map[string]string{"HostRole": "ec2"}))
	for _, name := range []string{"HostInstanceProfile", "HostInstanceProfileArn"} {
		if v, ok := without[name]; ok {
			t.Errorf("HostRole=none: output %s = %q; want none", name, v)
		}
	}
	s := deployedStack(nil)
	if with["HostInstanceProfile"] != s.Refs["AgentInstanceProfile"] || with["HostInstanceProfileArn"] != s.Attrs["AgentInstanceProfile.Arn"] {
		t.Errorf("HostRole=ec2: outputs %q, %q; want the profile's name and ARN", with["HostInstanceProfile"], with["HostInstanceProfileArn"])
	}
	for name := range without {
		if _, ok := with[name]; !ok {
			t.Errorf("HostRole=ec2 loses the output %s", name)
		}
	}
}

// TestDocumentedAgentEnvCommand runs docs/deploy-aws.md's command that turns the
// AgentEnv output into agent.env lines, with the AWS CLI, against a server
// that answers DescribeStacks (CloudFormation's query protocol) with the
// template's outputs evaluated for a deployed stack: what a user pastes is
// what the agent needs, one KEY=VALUE a line. The server stands in for
// CloudFormation, which the local stack does not have; the CLI's
// formatting (--query, --output text) is the real one.
func TestDocumentedAgentEnvCommand(t *testing.T) {
	var command string
	for _, b := range stacktest.DocBlocks(stacktest.DocSection(t, "docs/deploy-aws.md", "Deploy")) {
		if strings.HasPrefix(b, "printf '%s\\n' $(aws cloudformation describe-stacks") {
			command = strings.TrimSuffix(b, "\n")
		}
	}
	if command == "" {
		t.Fatal(`docs/deploy-aws.md, Deploy: no block that starts with the printf of "aws cloudformation describe-stacks"`)
	}
	awsCLI, err := exec.LookPath("aws")
	if err != nil {
		stacktest.Unavailable(t, "the AWS CLI (aws): %v", err)
	}

	s := deployedStack(nil)
	out := evalOutputs(t, s)
	var members strings.Builder
	for _, k := range slices.Sorted(maps.Keys(out)) {
		members.WriteString("<member><OutputKey>" + xmlText(k) + "</OutputKey><OutputValue>" + xmlText(out[k]) + "</OutputValue></member>")
	}
	response := `<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><DescribeStacksResult><Stacks><member>` +
		`<StackId>arn:aws:cloudformation:eu-west-1:123456789012:stack/offload/0a1b2c3d-4e5f-6789-abcd-ef0123456789</StackId>` +
		`<StackName>offload</StackName><CreationTime>2026-01-01T00:00:00Z</CreationTime><StackStatus>CREATE_COMPLETE</StackStatus>` +
		`<Outputs>` + members.String() + `</Outputs></member></Stacks></DescribeStacksResult>` +
		`<ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></DescribeStacksResponse>`
	var asked []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		asked = append(asked, r.Form.Get("Action")+" "+r.Form.Get("StackName"))
		mu.Unlock()
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, response)
	}))
	defer srv.Close()

	home := t.TempDir()
	cmd := exec.Command("sh", "-c", command)
	cmd.Env = []string{"PATH=" + filepath.Dir(awsCLI) + ":" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
		"AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=example", "AWS_DEFAULT_REGION=eu-west-1",
		"AWS_ENDPOINT_URL_CLOUDFORMATION=" + srv.URL, "AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER="}
	if v := os.Getenv("PYENV_ROOT"); v != "" {
		cmd.Env = append(cmd.Env, "PYENV_ROOT="+v)
	}
	printed, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", command, err, printed)
	}
	want := strings.Join([]string{
		"OFFLOAD_BUCKET=" + s.Refs["OriginalsBucket"],
		"OFFLOAD_TABLE=" + s.Refs["LedgerTable"],
		"AWS_REGION=" + s.Refs["AWS::Region"],
		"OFFLOAD_RESOLVER_BASE=" + out["ResolverBase"],
	}, "\n") + "\n"
	if string(printed) != want {
		t.Errorf("docs/deploy-aws.md's command printed:\n%s\nwant:\n%s", printed, want)
	}
	if len(asked) != 1 || asked[0] != "DescribeStacks offload" {
		t.Errorf("requests %q; want one DescribeStacks of the stack offload", asked)
	}
}

// xmlText escapes s for an XML text node.
func xmlText(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// bucketStatements is the bucket policy's Statement list as CloudFormation
// deploys it with the CDN on or off.
func bucketStatements(t *testing.T, doc map[string]any, cdn bool) []any {
	t.Helper()
	raw := get(resource(t, doc, "OriginalsBucketPolicy"), "Properties", "PolicyDocument", "Statement")
	statements, _ := resolveIf(t, raw, map[string]bool{"CdnOn": cdn, "KmsOn": false}).([]any)
	return statements
}

// cdnResources are the resources Cdn=on adds, and the only ones it adds.
var cdnResources = []string{"CdnOriginAccessControl", "CdnCachePolicy", "CdnKey", "CdnKeyGroup", "CdnDistribution"}

// todaysBucketPolicy is the bucket policy's two statements before the CDN
// existed, which Cdn=off must deploy unchanged.
const todaysBucketPolicy = `[
  {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
   "Resource": ["GetAtt:OriginalsBucket.Arn", "${OriginalsBucket.Arn}/*"],
   "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
  {"Sid": "DenyUnconditionalWrites", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
   "Resource": "${OriginalsBucket.Arn}/*",
   "Condition": {"Null": {"s3:if-none-match": "true"}, "Bool": {"s3:ObjectCreationOperation": "true"}}}]`

// TestTemplateCdnConditions: the CDN is off unless Cdn=on; its resources
// exist only under CdnOn; with it off the template deploys exactly the
// resources and the bucket policy it did before the CDN existed.
func TestTemplateCdnConditions(t *testing.T) {
	doc := loadTemplate(t)
	jsonEqual(t, "parameter Cdn", get(doc, "Parameters", "Cdn"), `{"Type": "String", "Default": "off",
		"AllowedValues": ["off", "on"], "Description": `+mustJSON(t, get(doc, "Parameters", "Cdn", "Description"))+`}`)
	jsonEqual(t, "parameter CdnPublicKey", get(doc, "Parameters", "CdnPublicKey"), `{"Type": "String", "Default": "",
		"Description": `+mustJSON(t, get(doc, "Parameters", "CdnPublicKey", "Description"))+`}`)

	raw, err := os.ReadFile("template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for params, want := range map[string]bool{"": false, "off": false, "on": true} {
		p := map[string]string{"Cdn": params}
		if params == "" {
			p = nil // the default
		}
		on, err := templatepolicy.Condition(raw, "CdnOn", deployedStack(p))
		if err != nil || on != want {
			t.Errorf("Cdn=%q: CdnOn = %v (%v); want %v", params, on, err, want)
		}
	}

	resources, _ := doc["Resources"].(map[string]any)
	var off []string
	for name, r := range resources {
		isCdn := slices.Contains(cdnResources, name)
		if c := get(r, "Condition"); isCdn != (c == "CdnOn") {
			t.Errorf("resource %s: Condition %v; want CdnOn exactly on %v", name, c, cdnResources)
		}
		if isCdn {
			continue
		}
		off = append(off, name)
		if name == "OriginalsBucketPolicy" {
			continue // its CDN statement: below
		}
		if name == "EraserPolicy" {
			// Its one CDN statement, granted only with CdnOn: the grants
			// themselves are TestTemplatePoliciesAreLeastPrivilege's.
			st := get(r, "Properties", "PolicyDocument", "Statement").([]any)
			last, _ := json.Marshal(st[len(st)-1])
			if !strings.HasPrefix(string(last), `{"If":["CdnOn",`) || !strings.HasSuffix(string(last), `,"Ref:AWS::NoValue"]}`) {
				t.Errorf("EraserPolicy's last statement: %s; want !If [CdnOn, STATEMENT, !Ref AWS::NoValue]", last)
			}
			r = maps.Clone(r.(map[string]any))
			props := maps.Clone(r.(map[string]any)["Properties"].(map[string]any))
			doc := maps.Clone(props["PolicyDocument"].(map[string]any))
			doc["Statement"] = st[:len(st)-1]
			props["PolicyDocument"] = doc
			r.(map[string]any)["Properties"] = props
		}
		if name == "ResolverFunction" {
			r = resolverFunction(t, doc, false) // its CDN settings and grant: TestTemplateCdnResolver
		}
		if b, _ := json.Marshal(r); strings.Contains(string(b), "Cdn") {
			t.Errorf("resource %s refers to the CDN: %s", name, b)
		}
	}
	for _, name := range cdnResources {
		resource(t, doc, name)
	}
	slices.Sort(off)
	today := []string{"AgentHostRole", "AgentInstanceProfile", "AgentPolicy", "AuditPolicy", "EraserPolicy",
		"LedgerTable", "OriginalsBucket", "OriginalsBucketPolicy", "ResolverFunction", "ResolverLogGroup"}
	if !slices.Equal(off, today) {
		t.Errorf("with Cdn=off the resources are %v; want today's %v", off, today)
	}
	policy := maps.Clone(get(resource(t, doc, "OriginalsBucketPolicy"), "Properties", "PolicyDocument").(map[string]any))
	policy["Statement"] = bucketStatements(t, doc, false)
	jsonEqual(t, "bucket policy with Cdn=off", policy, `{"Version": "2012-10-17", "Statement": `+todaysBucketPolicy+`}`)
}

// TestTemplateCdnOriginAccessControl: CloudFront reads the private bucket
// through an Origin Access Control that signs every request with SigV4,
// at the bucket's regional domain, with the empty OriginAccessIdentity
// CloudFormation wants beside an OAC.
func TestTemplateCdnOriginAccessControl(t *testing.T) {
	doc := loadTemplate(t)
	oac := get(resource(t, doc, "CdnOriginAccessControl"), "Properties", "OriginAccessControlConfig").(map[string]any)
	jsonEqual(t, "OAC", map[string]any{
		"OriginAccessControlOriginType": oac["OriginAccessControlOriginType"],
		"SigningBehavior":               oac["SigningBehavior"], "SigningProtocol": oac["SigningProtocol"],
	}, `{"OriginAccessControlOriginType": "s3", "SigningBehavior": "always", "SigningProtocol": "sigv4"}`)
	if get(resource(t, doc, "CdnOriginAccessControl"), "Type") != "AWS::CloudFront::OriginAccessControl" {
		t.Errorf("CdnOriginAccessControl is not an AWS::CloudFront::OriginAccessControl")
	}
	jsonEqual(t, "distribution Origins", get(resource(t, doc, "CdnDistribution"), "Properties", "DistributionConfig", "Origins"),
		`[{"Id": "originals", "DomainName": "GetAtt:OriginalsBucket.RegionalDomainName",
		   "OriginAccessControlId": "GetAtt:CdnOriginAccessControl.Id", "S3OriginConfig": {"OriginAccessIdentity": ""}}]`)
}

// TestTemplateCdnCachePolicy: the cache key holds versionId and the
// response overrides the resolver puts in its presigned URLs, found in its
// code and named as the SDK sends them, and nothing else: no header, no
// cookie, no other query string (so Expires, Signature and Key-Pair-Id
// stay out and every signed URL for one version shares one copy).
func TestTemplateCdnCachePolicy(t *testing.T) {
	doc := loadTemplate(t)
	policy := resource(t, doc, "CdnCachePolicy")
	config := get(policy, "Properties", "CachePolicyConfig")

	// The query strings the resolver's presigned URLs carry: versionId
	// (the recorded version) and each Response* field it sets, by the
	// name the SDK's serializer gives it.
	var src strings.Builder
	files, _ := filepath.Glob("lambda/*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	if !strings.Contains(src.String(), "VersionId: optional(t.versionID)") {
		t.Fatalf("the resolver no longer presigns the recorded version as it did; revisit the cache key")
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/aws/aws-sdk-go-v2/service/s3").Output()
	if err != nil {
		t.Fatalf("go list the S3 module: %v", err)
	}
	ser, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "serializers.go"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"versionId"}
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`\b(Response[A-Z][A-Za-z]*):`).FindAllStringSubmatch(src.String(), -1) {
		field := m[1]
		if seen[field] {
			continue
		}
		seen[field] = true
		q := regexp.MustCompile(`SetQuery\("([a-z-]+)"\)\.String\(\*v\.` + field + `\)`).FindSubmatch(ser)
		if q == nil {
			t.Fatalf("the SDK's serializer has no query string for %s", field)
		}
		want = append(want, string(q[1]))
	}
	if len(want) < 3 {
		t.Errorf("found the overrides %v in the resolver; want at least response-content-type and response-content-disposition", want)
	}
	slices.Sort(want)
	got := strList(get(config, "ParametersInCacheKeyAndForwardedToOrigin", "QueryStringsConfig", "QueryStrings"))
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("cache key query strings %v; want exactly %v", got, want)
	}
	key := maps.Clone(get(config, "ParametersInCacheKeyAndForwardedToOrigin").(map[string]any))
	delete(key, "QueryStringsConfig")
	jsonEqual(t, "cache key", map[string]any{"rest": key, "behavior": get(config, "ParametersInCacheKeyAndForwardedToOrigin", "QueryStringsConfig", "QueryStringBehavior")},
		`{"behavior": "whitelist", "rest": {"EnableAcceptEncodingGzip": false, "EnableAcceptEncodingBrotli": false,
		  "HeadersConfig": {"HeaderBehavior": "none"}, "CookiesConfig": {"CookieBehavior": "none"}}}`)
	// One day by default, up to a year if S3 sent a Cache-Control, none
	// below what it asks: an original never changes under its version id.
	jsonEqual(t, "cache TTLs", map[string]any{"MinTTL": get(config, "MinTTL"), "DefaultTTL": get(config, "DefaultTTL"), "MaxTTL": get(config, "MaxTTL")},
		`{"MinTTL": 0, "DefaultTTL": 86400, "MaxTTL": 31536000}`)
	if got := get(resource(t, doc, "CdnDistribution"), "Properties", "DistributionConfig", "DefaultCacheBehavior", "CachePolicyId"); got != "Ref:CdnCachePolicy" {
		t.Errorf("the behaviour's CachePolicyId is %v; want Ref:CdnCachePolicy", got)
	}
}

// TestTemplateCdnKeyGroup: the site's public key, from the parameter, is
// the key group's only key, and the distribution's only behaviour trusts
// that group (so it serves signed URLs only), over HTTPS only, for GET and
// HEAD, with no other behaviour and no default root object.
func TestTemplateCdnKeyGroup(t *testing.T) {
	doc := loadTemplate(t)
	if got := get(resource(t, doc, "CdnKey"), "Properties", "PublicKeyConfig", "EncodedKey"); got != "Ref:CdnPublicKey" {
		t.Errorf("CdnKey EncodedKey %v; want the CdnPublicKey parameter", got)
	}
	jsonEqual(t, "CdnKeyGroup Items", get(resource(t, doc, "CdnKeyGroup"), "Properties", "KeyGroupConfig", "Items"), `["Ref:CdnKey"]`)
	for name, typ := range map[string]string{"CdnKey": "AWS::CloudFront::PublicKey", "CdnKeyGroup": "AWS::CloudFront::KeyGroup", "CdnDistribution": "AWS::CloudFront::Distribution"} {
		if got := get(resource(t, doc, name), "Type"); got != typ {
			t.Errorf("%s is %v; want %s", name, got, typ)
		}
	}
	config := get(resource(t, doc, "CdnDistribution"), "Properties", "DistributionConfig").(map[string]any)
	jsonEqual(t, "DefaultCacheBehavior", config["DefaultCacheBehavior"],
		`{"TargetOriginId": "originals", "ViewerProtocolPolicy": "https-only",
		  "AllowedMethods": ["GET", "HEAD"], "CachedMethods": ["GET", "HEAD"],
		  "CachePolicyId": "Ref:CdnCachePolicy", "TrustedKeyGroups": ["Ref:CdnKeyGroup"], "Compress": false}`)
	keys := slices.Sorted(maps.Keys(config))
	if want := []string{"Comment", "DefaultCacheBehavior", "Enabled", "Origins"}; !slices.Equal(keys, want) {
		t.Errorf("DistributionConfig has %v; want exactly %v (no other behaviour, no DefaultRootObject)", keys, want)
	}
	if config["Enabled"] != true {
		t.Errorf("distribution Enabled %v", config["Enabled"])
	}
}

// TestTemplateCdnBucketPolicy: with Cdn=on the bucket policy keeps its two
// statements and gains one: CloudFront's service principal, for this
// stack's distribution only, may read the objects under the key prefix,
// their current and their named versions, and nothing else.
func TestTemplateCdnBucketPolicy(t *testing.T) {
	doc := loadTemplate(t)
	var today []any
	if err := json.Unmarshal([]byte(todaysBucketPolicy), &today); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(append(today, map[string]any{
		"Sid": "AllowCloudFrontRead", "Effect": "Allow",
		"Principal": map[string]any{"Service": "cloudfront.amazonaws.com"},
		"Action":    []string{"s3:GetObject", "s3:GetObjectVersion"},
		"Resource":  "${OriginalsBucket.Arn}/${KeyPrefix}*",
		"Condition": map[string]any{"StringEquals": map[string]any{
			"AWS:SourceArn": "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${CdnDistribution}"}},
	}))
	jsonEqual(t, "bucket policy with Cdn=on", bucketStatements(t, doc, true), string(want))
}

// TestTemplateCdnOutputs: CdnDomain, CdnKeyPairId, CdnKeyGroupId and CdnDistributionId exist
// only with Cdn=on, and turning it on changes no other output.
func TestTemplateCdnOutputs(t *testing.T) {
	cdn := []string{"CdnDomain", "CdnKeyPairId", "CdnKeyGroupId", "CdnDistributionId"}
	off := evalOutputs(t, deployedStack(map[string]string{"Cdn": "off"}))
	for _, name := range cdn {
		if v, ok := off[name]; ok {
			t.Errorf("Cdn=off: output %s = %q; want none", name, v)
		}
	}
	s := deployedStack(map[string]string{"Cdn": "on"})
	s.Refs["CdnKey"] = "K2JCJMDEHXQW5F"
	s.Refs["CdnKeyGroup"] = "4f7c1c3e-0c2b-4f67-9d0a-2f3b1e6f5a10"
	s.Refs["CdnDistribution"] = "EDFDVBD6EXAMPLE"
	s.Attrs["CdnDistribution.DomainName"] = "d111111abcdef8.cloudfront.net"
	on := evalOutputs(t, s)
	for name, want := range map[string]string{"CdnDomain": "d111111abcdef8.cloudfront.net", "CdnKeyPairId": "K2JCJMDEHXQW5F",
		"CdnKeyGroupId": s.Refs["CdnKeyGroup"], "CdnDistributionId": "EDFDVBD6EXAMPLE"} {
		if on[name] != want {
			t.Errorf("Cdn=on: output %s = %q; want %q", name, on[name], want)
		}
		delete(on, name)
	}
	// AgentEnv gains the distribution for erase (TestTemplateAgentEnv).
	if want := off["AgentEnv"] + " OFFLOAD_CDN_DISTRIBUTION_ID=EDFDVBD6EXAMPLE"; on["AgentEnv"] != want {
		t.Errorf("Cdn=on: AgentEnv = %q; want %q", on["AgentEnv"], want)
	}
	delete(on, "AgentEnv")
	delete(off, "AgentEnv")
	if !maps.Equal(on, off) {
		t.Errorf("Cdn=on changes the other outputs: %v; with it off %v", on, off)
	}
}

// resolverFunction is the ResolverFunction resource as deployed with
// CdnOn = cdn: each Fn::If resolved, an environment variable whose value is
// AWS::NoValue left out, as CloudFormation does.
func resolverFunction(t *testing.T, doc map[string]any, cdn bool) map[string]any {
	t.Helper()
	r := resolveIf(t, resource(t, doc, "ResolverFunction"), map[string]bool{"CdnOn": cdn, "KmsOn": false}).(map[string]any)
	vars, _ := get(r, "Properties", "Environment", "Variables").(map[string]any)
	for k, v := range vars {
		s, _ := v.(string)
		rest, isIf := strings.CutPrefix(s, "If:")
		if !isIf {
			continue
		}
		cond, rest, _ := strings.Cut(rest, ".")
		if cond != "CdnOn" {
			t.Fatalf("%s: Fn::If on %s, which the test does not set", k, cond)
		}
		then, isNoValue := strings.CutSuffix(rest, ".Ref:AWS::NoValue")
		switch {
		case !isNoValue:
			t.Errorf("%s = %s: want Fn::If [CdnOn, value, AWS::NoValue]", k, s)
		case cdn:
			vars[k] = then
		default:
			delete(vars, k)
		}
	}
	return r
}

// TestTemplateCdnResolver: with Cdn=on the resolver gets the three CDN
// settings (the distribution's https URL, the key's ID, the secret's ARN;
// never the private key) and may read that secret, and only it; with
// Cdn=off it gets neither. The secret's parameter is an ARN, empty by
// default, and a rule refuses Cdn=on without it.
func TestTemplateCdnResolver(t *testing.T) {
	doc := loadTemplate(t)
	jsonEqual(t, "parameter CdnPrivateKeySecret", get(doc, "Parameters", "CdnPrivateKeySecret"), `{"Type": "String", "Default": "",
		"AllowedPattern": `+mustJSON(t, get(doc, "Parameters", "CdnPrivateKeySecret", "AllowedPattern"))+`,
		"ConstraintDescription": `+mustJSON(t, get(doc, "Parameters", "CdnPrivateKeySecret", "ConstraintDescription"))+`,
		"Description": `+mustJSON(t, get(doc, "Parameters", "CdnPrivateKeySecret", "Description"))+`}`)
	pattern := regexp.MustCompile(get(doc, "Parameters", "CdnPrivateKeySecret", "AllowedPattern").(string))
	for v, ok := range map[string]bool{
		"": true,
		"arn:aws:secretsmanager:eu-west-1:123456789012:secret:offload/cdn-key-AbCdEf":     true,
		"arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:offload-cdn-key-AbCdEf": true,
		"offload-cdn-key": false, // a name: the grant needs the ARN
		// A partial ARN (no "-" and the six characters Secrets Manager
		// appends): GetSecretValue finds the secret by it, but the grant's
		// Resource would then be that partial ARN, which the secret's full
		// ARN never matches, and every cold start would be refused.
		"arn:aws:secretsmanager:eu-west-1:123456789012:secret:offload/cdn-key": false,
		"arn:aws:secretsmanager:eu-west-1:123456789012:secret:offload-cdn-key": false,
		"arn:aws:secretsmanager:eu-west-1:123456789012:secret:*":               false,
		"-----BEGIN PRIVATE KEY-----":                                          false,
	} {
		if pattern.MatchString(v) != ok {
			t.Errorf("CdnPrivateKeySecret %q: accepted %v; want %v", v, !ok, ok)
		}
	}

	on := resolverFunction(t, doc, true)
	off := resolverFunction(t, doc, false)
	cdnVars := map[string]string{
		"OFFLOAD_CDN_URL":                "https://${CdnDistribution.DomainName}",
		"OFFLOAD_CDN_KEY_PAIR_ID":        "Ref:CdnKey",
		"OFFLOAD_CDN_PRIVATE_KEY_SECRET": "Ref:CdnPrivateKeySecret",
	}
	onVars := get(on, "Properties", "Environment", "Variables").(map[string]any)
	offVars := get(off, "Properties", "Environment", "Variables").(map[string]any)
	for k, want := range cdnVars {
		if got := onVars[k]; got != want {
			t.Errorf("Cdn=on: %s = %v; want %s", k, got, want)
		}
		if got, ok := offVars[k]; ok {
			t.Errorf("Cdn=off: %s = %v; want it absent", k, got)
		}
	}
	if len(onVars) != len(offVars)+len(cdnVars) {
		t.Errorf("Cdn=on adds %d variables; want exactly %v", len(onVars)-len(offVars), cdnVars)
	}
	if b, _ := json.Marshal(onVars); strings.Contains(string(b), "PRIVATE KEY") || strings.Contains(string(b), "Ref:CdnPublicKey") {
		t.Errorf("the function's environment carries a key: %s", b)
	}
	grant := `{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "Ref:CdnPrivateKeySecret"}`
	statements := func(r map[string]any) []any {
		var all []any
		for _, p := range get(r, "Properties", "Policies").([]any) {
			all = append(all, get(p, "Statement").([]any)...)
		}
		return all
	}
	var found int
	for _, st := range statements(on) {
		if b, _ := json.Marshal(st); strings.Contains(string(b), "secretsmanager") {
			jsonEqual(t, "Cdn=on: the secret's grant", st, grant)
			found++
		}
	}
	if found != 1 {
		t.Errorf("Cdn=on: %d statements grant secretsmanager actions; want 1", found)
	}
	if b, _ := json.Marshal(statements(off)); strings.Contains(string(b), "secretsmanager") {
		t.Errorf("Cdn=off: the resolver may read a secret: %s", b)
	}

	// The rule, read from the YAML itself (goformation keeps no Rules).
	raw, err := os.ReadFile("template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tmpl struct {
		Rules map[string]struct {
			RuleCondition yaml.Node `yaml:"RuleCondition"`
			Assertions    []struct {
				Assert            yaml.Node `yaml:"Assert"`
				AssertDescription string    `yaml:"AssertDescription"`
			} `yaml:"Assertions"`
		} `yaml:"Rules"`
	}
	if err := yaml.Unmarshal(raw, &tmpl); err != nil {
		t.Fatal(err)
	}
	rule, ok := tmpl.Rules["CdnNeedsPrivateKeySecret"]
	if !ok {
		t.Fatalf("no rule CdnNeedsPrivateKeySecret; rules %v", tmpl.Rules)
	}
	if got := yamlText(t, &rule.RuleCondition); got != `!Equals [!Ref Cdn, "on"]` {
		t.Errorf("RuleCondition %s; want Cdn=on", got)
	}
	if len(rule.Assertions) != 1 || yamlText(t, &rule.Assertions[0].Assert) != `!Not [!Equals [!Ref CdnPrivateKeySecret, ""]]` ||
		!strings.Contains(rule.Assertions[0].AssertDescription, "CdnPrivateKeySecret") {
		t.Errorf("assertions %+v; want CdnPrivateKeySecret not empty, said so", rule.Assertions)
	}
	// Without a public key the distribution's key would fail to create
	// half-way through the deploy (and roll it back); the rule refuses it
	// before anything is created.
	rule, ok = tmpl.Rules["CdnNeedsPublicKey"]
	if !ok {
		t.Fatalf("no rule CdnNeedsPublicKey; rules %v", tmpl.Rules)
	}
	if got := yamlText(t, &rule.RuleCondition); got != `!Equals [!Ref Cdn, "on"]` {
		t.Errorf("CdnNeedsPublicKey: RuleCondition %s; want Cdn=on", got)
	}
	if len(rule.Assertions) != 1 || yamlText(t, &rule.Assertions[0].Assert) != `!Not [!Equals [!Ref CdnPublicKey, ""]]` ||
		!strings.Contains(rule.Assertions[0].AssertDescription, "CdnPublicKey") {
		t.Errorf("CdnNeedsPublicKey: assertions %+v; want CdnPublicKey not empty, said so", rule.Assertions)
	}
}

// yamlText is a node as flow-style YAML on one line.
func yamlText(t *testing.T, n *yaml.Node) string {
	t.Helper()
	var setFlow func(*yaml.Node)
	setFlow = func(n *yaml.Node) {
		n.Style |= yaml.FlowStyle
		for _, c := range n.Content {
			setFlow(c)
		}
	}
	setFlow(n)
	b, err := yaml.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
