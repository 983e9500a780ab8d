package offload_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/intrinsics"
	"github.com/awslabs/goformation/v7/schema"
	"github.com/xeipuuv/gojsonschema"
)

// loadTemplate parses template.yaml with goformation, keeping references
// readable ("Ref:X", "GetAtt:X.Y", the Sub string itself) instead of
// resolving them, and returns it as plain JSON values.
func loadTemplate(t *testing.T) map[string]any {
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
	opts := &intrinsics.ProcessorOptions{IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{
		"Ref": keep("Ref:"), "Fn::GetAtt": keep("GetAtt:"), "Fn::Sub": keep(""), "Fn::If": keep("If:"),
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
	res, err := gojsonschema.Validate(gojsonschema.NewStringLoader(schema.SamSchema), gojsonschema.NewGoLoader(doc))
	if err != nil {
		t.Fatalf("schema validation: %v", err)
	}
	for _, e := range res.Errors() {
		t.Errorf("SAM schema: %s", e)
	}
}

func TestTemplateSecurity(t *testing.T) {
	doc := loadTemplate(t)
	raw, _ := os.ReadFile("template.yaml")

	bucket := resource(t, doc, "OriginalsBucket")
	for _, k := range []string{"BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"} {
		if get(bucket, "Properties", "PublicAccessBlockConfiguration", k) != true {
			t.Errorf("bucket: PublicAccessBlockConfiguration.%s is not true", k)
		}
	}
	if get(bucket, "Properties", "VersioningConfiguration", "Status") != "Enabled" {
		t.Errorf("bucket: versioning not enabled")
	}
	if get(bucket, "Properties", "BucketEncryption", "ServerSideEncryptionConfiguration", 0, "ServerSideEncryptionByDefault", "SSEAlgorithm") == nil {
		t.Errorf("bucket: no default encryption")
	}
	if d := get(bucket, "Properties", "LifecycleConfiguration", "Rules", 0, "AbortIncompleteMultipartUpload", "DaysAfterInitiation"); d == nil {
		t.Errorf("bucket: no AbortIncompleteMultipartUpload lifecycle rule")
	}
	for _, name := range []string{"OriginalsBucket", "LedgerTable"} {
		// goformation drops DeletionPolicy from its JSON; read the source.
		if !regexp.MustCompile(`(?m)^  ` + name + `:\n    Type: [^\n]+\n    DeletionPolicy: Retain\n`).Match(raw) {
			t.Errorf("%s: DeletionPolicy is not Retain", name)
		}
	}

	st := get(resource(t, doc, "OriginalsBucketPolicy"), "Properties", "PolicyDocument", "Statement", 0)
	if get(st, "Effect") != "Deny" || get(st, "Condition", "Bool", "aws:SecureTransport") != "false" {
		t.Errorf("bucket policy does not deny non-TLS access: %v", st)
	}

	table := resource(t, doc, "LedgerTable")
	if get(table, "Properties", "BillingMode") != "PAY_PER_REQUEST" ||
		get(table, "Properties", "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled") != true ||
		get(table, "Properties", "KeySchema", 0, "AttributeName") != "pk" {
		t.Errorf("ledger table: want PAY_PER_REQUEST, PITR and partition key pk: %v", table["Properties"])
	}

	fn := resource(t, doc, "ResolverFunction")
	p := func(k ...any) any { return get(fn, append([]any{"Properties"}, k...)...) }
	if p("Runtime") != "provided.al2023" || p("Architectures", 0) != "arm64" || p("Handler") != "bootstrap" || p("MemorySize") != 128.0 {
		t.Errorf("resolver: want provided.al2023, arm64, bootstrap, 128 MB: %v %v %v %v", p("Runtime"), p("Architectures"), p("Handler"), p("MemorySize"))
	}
	if p("FunctionUrlConfig", "AuthType") != "NONE" || p("FunctionUrlConfig", "InvokeMode") != "BUFFERED" {
		t.Errorf("resolver: Function URL must be AuthType NONE, InvokeMode BUFFERED: %v", p("FunctionUrlConfig"))
	}
	if get(fn, "Metadata", "BuildMethod") != "makefile" {
		t.Errorf("resolver: BuildMethod is not makefile")
	}

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
}

// TestTemplatePoliciesAreLeastPrivilege: no Allow statement anywhere has a
// wildcard action or the resource "*"; the agent's and the resolver's
// actions are exactly what they call. (The bucket policy's TLS rule is a
// Deny of s3:*, which takes rights away and may be broad.)
func TestTemplatePoliciesAreLeastPrivilege(t *testing.T) {
	doc := loadTemplate(t)
	actions := map[string][]string{}
	var walk func(owner string, v any)
	walk = func(owner string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if eff, ok := x["Effect"]; ok && eff == "Allow" {
				for _, a := range strList(x["Action"]) {
					if strings.Contains(a, "*") {
						t.Errorf("%s: wildcard action %q", owner, a)
					}
					actions[owner] = append(actions[owner], a)
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
	want := map[string][]string{
		"AgentPolicy":      {"dynamodb:GetItem", "dynamodb:PutItem", "s3:AbortMultipartUpload", "s3:GetObject", "s3:ListBucketMultipartUploads", "s3:ListMultipartUploadParts", "s3:PutObject"},
		"ResolverFunction": {"dynamodb:GetItem", "s3:GetObject"},
		"AuditPolicy":      {"dynamodb:BatchGetItem", "dynamodb:Scan", "s3:GetObject", "s3:ListBucket"},
	}
	for owner, w := range want {
		got := actions[owner]
		sort.Strings(got)
		if strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("%s allows %v; want exactly %v", owner, got, w)
		}
	}
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
