package templatepolicy

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func readTemplate(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTemplatePolicies reads the real template: each component gets S3
// statements on the target's bucket only, and the agent and the resolver,
// which have no s3:ListBucket, are the ones AWS answers 403 for a missing key.
func TestTemplatePolicies(t *testing.T) {
	target := Target{Bucket: "local-bucket", KeyPrefix: "p/"}
	for _, c := range Components {
		doc, err := S3Policy(readTemplate(t), c, target)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		for _, s := range doc.Statement {
			for _, r := range s.Resource {
				if r != target.BucketARN() && r != target.BucketARN()+"/p/*" {
					t.Errorf("%s: resource %q; want the bucket or its p/* objects", c, r)
				}
			}
			for _, a := range s.Action {
				if !strings.HasPrefix(a, "s3:") {
					t.Errorf("%s: non-S3 action %q kept", c, a)
				}
			}
		}
		// Every component reads originals but the eraser, which only
		// lists and deletes them.
		if reads := slices.Contains(doc.Actions(), "s3:GetObject"); reads != (c != Eraser) {
			t.Errorf("%s: actions %v; want s3:GetObject among them unless it is the eraser", c, doc.Actions())
		}
		lists := doc.Allows("s3:ListBucket", target.BucketARN())
		if want := c == Audit; lists != want {
			t.Errorf("%s: allows s3:ListBucket = %v; want %v", c, lists, want)
		}
	}
}

// TestPolicyKeepsTheLedger: Policy returns the DynamoDB statements S3Policy
// drops, on the target's table (or, the agent's Query, its index
// "erasures").
func TestPolicyKeepsTheLedger(t *testing.T) {
	target := Target{Bucket: "b", KeyPrefix: "p/", Table: "t"}
	for _, c := range Components {
		if c == Cloudfront {
			continue // CloudFront reads the bucket and nothing else
		}
		all, err := Policy(readTemplate(t), c, target)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		s3, err := S3Policy(readTemplate(t), c, target)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		var ledger int
		for _, s := range all.Statement {
			if strings.HasPrefix(s.Action[0], "dynamodb:") {
				ledger++
				want := target.TableARN()
				if slices.Equal(s.Action, []string{"dynamodb:Query"}) {
					want += "/index/erasures"
				}
				if !slices.Equal(s.Resource, []string{want}) {
					t.Errorf("%s: ledger statement %v on %v; want %s", c, s.Action, s.Resource, want)
				}
			}
		}
		if ledger == 0 || len(all.Statement) != len(s3.Statement)+ledger {
			t.Errorf("%s: %d statements, %d of them S3 and %d DynamoDB; want every statement one or the other, and some DynamoDB", c, len(all.Statement), len(s3.Statement), ledger)
		}
	}
}

func TestS3PolicyRefusesWhatItCannotFollow(t *testing.T) {
	for name, tmpl := range map[string]string{
		"unknown reference": `Resources:
  AgentPolicy:
    Properties:
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: s3:GetObject
            Resource: !Sub "${OtherBucket.Arn}/*"
`,
		"mixed services": `Resources:
  AgentPolicy:
    Properties:
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: [s3:GetObject, dynamodb:GetItem]
            Resource: "*"
`,
		"no policy": `Resources: {}
`,
	} {
		if _, err := S3Policy([]byte(tmpl), Agent, Target{Bucket: "b"}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestWithout: every S3 action the template grants a component can be
// taken away, and only that one goes.
func TestWithout(t *testing.T) {
	target := Target{Bucket: "b"}
	for _, c := range Components {
		full, err := S3Policy(readTemplate(t), c, target)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range full.Actions() {
			less, err := Without(readTemplate(t), c, a)
			if err != nil {
				t.Fatalf("%s without %s: %v", c, a, err)
			}
			doc, err := S3Policy(less, c, target)
			if err != nil {
				t.Fatalf("%s without %s: the result does not parse: %v", c, a, err)
			}
			want := slices.DeleteFunc(slices.Clone(full.Actions()), func(x string) bool { return x == a })
			if got := doc.Actions(); !slices.Equal(got, want) {
				t.Errorf("%s without %s: actions %v; want %v", c, a, got, want)
			}
		}
	}
	if _, err := Without(readTemplate(t), Agent, "s3:DeleteObject"); err == nil {
		t.Error("taking away an action the template does not grant: no error")
	}
}

// TestForMinIO: an Allow of s3:DeleteObjectVersion also allows
// s3:DeleteObject, the action MinIO checks for a delete that names a
// version; nothing else changes, and the document itself is left as it is.
func TestForMinIO(t *testing.T) {
	d := Document{Version: "2012-10-17", Statement: []Statement{
		{Effect: "Allow", Action: []string{"s3:DeleteObjectVersion", "s3:AbortMultipartUpload"}, Resource: []string{"arn:aws:s3:::b/p/*"}},
		{Effect: "Allow", Action: []string{"s3:ListBucketVersions"}, Resource: []string{"arn:aws:s3:::b"}},
		{Effect: "Deny", Action: []string{"s3:DeleteObjectVersion"}, Resource: []string{"arn:aws:s3:::b/q/*"}},
	}}
	before := d.JSON()
	got := d.ForMinIO()
	if want := []string{"s3:DeleteObjectVersion", "s3:AbortMultipartUpload", "s3:DeleteObject"}; !slices.Equal(got.Statement[0].Action, want) {
		t.Errorf("statement 1: actions %v; want %v", got.Statement[0].Action, want)
	}
	for i := 1; i < 3; i++ {
		if !slices.Equal(got.Statement[i].Action, d.Statement[i].Action) {
			t.Errorf("statement %d: actions %v; want them unchanged, %v", i+1, got.Statement[i].Action, d.Statement[i].Action)
		}
	}
	if d.JSON() != before {
		t.Errorf("ForMinIO changed its receiver: %s; was %s", d.JSON(), before)
	}
}

// TestCloudFrontIsTheBucketPolicysStatement: the edge's grant is the
// bucket policy's AllowCloudFrontRead as if Cdn=on, without its principal
// and its AWS:SourceArn condition, and no s3:ListBucket (so a missing key
// is a 403 for it, as on AWS).
func TestCloudFrontIsTheBucketPolicysStatement(t *testing.T) {
	target := Target{Bucket: "b", KeyPrefix: "p/"}
	doc, err := S3Policy(readTemplate(t), Cloudfront, target)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Statement) != 1 || doc.Statement[0].Sid != "AllowCloudFrontRead" || doc.Statement[0].Condition != nil {
		t.Fatalf("statements %+v; want AllowCloudFrontRead alone, without its condition", doc.Statement)
	}
	if got, want := doc.Actions(), []string{"s3:GetObject", "s3:GetObjectVersion"}; !slices.Equal(got, want) {
		t.Errorf("actions %v; want %v", got, want)
	}
	if !slices.Equal(doc.Statement[0].Resource, []string{"arn:aws:s3:::b/p/*"}) {
		t.Errorf("resource %v; want the p/* objects of b", doc.Statement[0].Resource)
	}
	odd := strings.Replace(string(readTemplate(t)), "Service: cloudfront.amazonaws.com", "Service: lambda.amazonaws.com", 1)
	if _, err := S3Policy([]byte(odd), Cloudfront, target); err == nil {
		t.Error("AllowCloudFrontRead for another principal: no error")
	}
}

// TestPolicyFollowsConditions: a statement written as an Fn::If is the
// branch the target's condition picks, and nothing for AWS::NoValue: the
// resolver may read the CDN key's secret, that secret only, with CdnOn
// only.
func TestPolicyFollowsConditions(t *testing.T) {
	const secret = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:offload-cdn-key-AbCdEf"
	for _, on := range []bool{false, true} {
		target := Target{Bucket: "b", KeyPrefix: "p/", Table: "t", Conditions: map[string]bool{"CdnOn": on},
			Parameters: map[string]string{"CdnPrivateKeySecret": secret}}
		doc, err := Policy(readTemplate(t), Resolver, target)
		if err != nil {
			t.Fatalf("CdnOn=%v: %v", on, err)
		}
		if got := doc.Allows("secretsmanager:GetSecretValue", secret); got != on {
			t.Errorf("CdnOn=%v: the resolver may read the secret: %v", on, got)
		}
		for _, s := range doc.Statement {
			if slices.Contains(s.Action, "secretsmanager:GetSecretValue") && !slices.Equal(s.Resource, []string{secret}) {
				t.Errorf("CdnOn=%v: GetSecretValue on %v; want exactly the secret", on, s.Resource)
			}
		}
		if _, err := S3Policy(readTemplate(t), Resolver, target); err != nil {
			t.Errorf("CdnOn=%v: S3Policy: %v", on, err)
		}
	}
	// A condition the target leaves out is false, so the stack's S3
	// policies need no parameter.
	if _, err := S3Policy(readTemplate(t), Resolver, Target{Bucket: "b", KeyPrefix: "p/"}); err != nil {
		t.Errorf("S3Policy without conditions: %v", err)
	}
	if _, err := Policy(readTemplate(t), Resolver, Target{Bucket: "b", KeyPrefix: "p/", Table: "t", Conditions: map[string]bool{"CdnOn": true}}); err == nil ||
		!strings.Contains(err.Error(), "CdnPrivateKeySecret") {
		t.Errorf("CdnOn without the secret's parameter: error %v; want one naming CdnPrivateKeySecret", err)
	}
}
