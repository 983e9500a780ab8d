// Package templatepolicy reads what template.yaml grants each component (the
// agent, the resolver, the audit, the eraser, and CloudFront's Origin
// Access Control) as an IAM policy document with the
// template's references resolved for a target, and turns the S3 part of it
// into the policy the local stack's bucket enforces. The stack gives each
// component credentials restricted to exactly that document, so a test
// that passes locally has passed under the template's own least privilege:
// removing an action the code needs from the template fails a test.
//
// Only S3 is covered: MinIO enforces IAM policies, dynalite does not.
package templatepolicy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// The components whose grants the template defines, by the names the
// stack exports their credentials under.
const (
	Agent    = "agent"
	Resolver = "resolver"
	Audit    = "audit"
	Eraser   = "eraser" // offload-agent erase, an operator's command
	// Cloudfront is CloudFront reading the bucket through Origin Access
	// Control (Cdn=on): the local edge (infra/local/edge) reads with its
	// credentials. Its grant is a statement of the bucket policy, not an
	// identity policy (see cloudFrontStatement).
	Cloudfront = "cloudfront"
)

// Components lists every component, in a fixed order.
var Components = []string{Agent, Resolver, Audit, Eraser, Cloudfront}

// managedPolicies are the components whose grants are one
// AWS::IAM::ManagedPolicy of the template, by its resource name.
var managedPolicies = map[string]string{Agent: "AgentPolicy", Audit: "AuditPolicy", Eraser: "EraserPolicy"}

// TemplateEnv names the variable that points the stack (and the tests'
// private MinIO servers) at another template than the repository's
// template.yaml: infra/local/checkgrants uses it to run the suites with one
// action taken away.
const TemplateEnv = "OFFLOAD_TEMPLATE"

// TemplatePath is the template the stack grants from: $OFFLOAD_TEMPLATE,
// or template.yaml in the repository root.
func TemplatePath(repo string) string {
	if p := os.Getenv(TemplateEnv); p != "" {
		return p
	}
	return filepath.Join(repo, "template.yaml")
}

// Document is an IAM policy document.
type Document struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Statement is one statement of a Document.
type Statement struct {
	Sid       string                       `json:"Sid,omitempty"`
	Effect    string                       `json:"Effect"`
	Action    []string                     `json:"Action"`
	Resource  []string                     `json:"Resource"`
	Condition map[string]map[string]string `json:"Condition,omitempty"`
}

// Allows reports whether an Allow statement names action (exactly, or with
// "s3:*") on resource (exactly).
func (d Document) Allows(action, resource string) bool {
	return d.allows(action, func(r string) bool { return r == resource })
}

// AllowsOn reports whether an Allow statement names action (exactly, or
// with "s3:*") on some resource that starts with prefix: for object
// actions, granted under a key prefix.
func (d Document) AllowsOn(action, prefix string) bool {
	return d.allows(action, func(r string) bool { return strings.HasPrefix(r, prefix) })
}

func (d Document) allows(action string, resourceMatches func(string) bool) bool {
	for _, s := range d.Statement {
		if s.Effect != "Allow" {
			continue
		}
		for _, a := range s.Action {
			if a != action && a != "s3:*" {
				continue
			}
			for _, r := range s.Resource {
				if resourceMatches(r) {
					return true
				}
			}
		}
	}
	return false
}

// Actions returns every action the document allows, sorted.
func (d Document) Actions() []string {
	seen := map[string]bool{}
	for _, s := range d.Statement {
		for _, a := range s.Action {
			seen[a] = true
		}
	}
	out := make([]string, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// Target is what the template's references resolve to in the local stack.
type Target struct {
	Bucket    string // the bucket that stands in for OriginalsBucket
	KeyPrefix string // the value of the KeyPrefix parameter
	Table     string // the table that stands in for LedgerTable (S3Policy needs none)
	// Conditions are the template's conditions as the target deploys
	// them, for a statement written as an Fn::If (the resolver's read of
	// the CDN key, under CdnOn). One not named is false, as every
	// condition of the template is with its parameters' defaults.
	Conditions map[string]bool
	// Parameters resolve a !Ref to a parameter in a statement
	// (CdnPrivateKeySecret).
	Parameters map[string]string
	// Distribution is the ID that stands in for CdnDistribution.
	Distribution string
}

// The account and partition the target's ARNs are in.
const (
	targetAccount   = "000000000000"
	targetPartition = "aws"
	targetRegion    = "local" // as in TableARN
)

// KMSViaS3 is what the condition key kms:ViaService is for a request S3
// makes to KMS on a caller's behalf in the target's region.
const KMSViaS3 = "s3." + targetRegion + ".amazonaws.com"

// DistributionARN is the ARN of the target's CloudFront distribution.
func (t Target) DistributionARN() string {
	return "arn:" + targetPartition + ":cloudfront::" + targetAccount + ":distribution/" + t.Distribution
}

// BucketARN is the ARN of the target's bucket.
func (t Target) BucketARN() string { return "arn:aws:s3:::" + t.Bucket }

// TableARN is the ARN of the target's table.
func (t Target) TableARN() string {
	return "arn:" + targetPartition + ":dynamodb:local:" + targetAccount + ":table/" + t.Table
}

// S3Policy returns the S3 statements the template grants component, with
// the template's references to the bucket and the key prefix resolved for
// target. Statements about other services (the ledger table) are left out;
// a statement that mixes S3 and another service is an error, as is any
// reference this package does not know: a template change that the stack
// cannot follow must not pass silently.
func S3Policy(template []byte, component string, target Target) (Document, error) {
	all, err := Policy(template, component, target)
	if err != nil {
		return Document{}, err
	}
	doc := Document{Version: all.Version}
	for i, s := range all.Statement {
		var s3Actions int
		for _, a := range s.Action {
			if strings.HasPrefix(a, "s3:") {
				s3Actions++
			}
		}
		switch {
		case s3Actions == 0:
			continue // the ledger's part: dynalite enforces no policy
		case s3Actions != len(s.Action):
			return Document{}, fmt.Errorf("%s policy, statement %d mixes S3 and other actions: %v", component, i+1, s.Action)
		}
		doc.Statement = append(doc.Statement, s)
	}
	if len(doc.Statement) == 0 {
		return Document{}, fmt.Errorf("template grants %s no S3 action", component)
	}
	return doc, nil
}

// Policy returns every statement the template grants component, S3 and
// DynamoDB alike, with the references to the bucket, the key prefix and
// the table resolved for target. A reference or a field this package does
// not know is an error.
func Policy(template []byte, component string, target Target) (Document, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(template, &root); err != nil {
		return Document{}, fmt.Errorf("template: %w", err)
	}
	if len(root.Content) != 1 {
		return Document{}, errors.New("template: not a YAML document")
	}
	resources := child(root.Content[0], "Resources")
	var statements []*yaml.Node
	switch component {
	case Agent, Audit, Eraser:
		name := managedPolicies[component]
		if st := child(child(child(child(resources, name), "Properties"), "PolicyDocument"), "Statement"); st != nil {
			statements = st.Content
		}
	case Resolver:
		// A SAM function's Policies: inline documents (managed policy
		// names would grant what this package cannot see, so they are refused).
		policies := child(child(child(resources, "ResolverFunction"), "Properties"), "Policies")
		if policies == nil {
			break
		}
		for _, p := range policies.Content {
			st := child(p, "Statement")
			if st == nil {
				return Document{}, fmt.Errorf("ResolverFunction.Policies: an entry that is not an inline policy document (line %d)", p.Line)
			}
			statements = append(statements, st.Content...)
		}
	case Cloudfront:
		st, err := cloudFrontStatement(resources)
		if err != nil {
			return Document{}, err
		}
		statements = []*yaml.Node{st}
	default:
		return Document{}, fmt.Errorf("unknown component %q (want one of %v)", component, Components)
	}
	if len(statements) == 0 {
		return Document{}, fmt.Errorf("template grants %s nothing: its policy was not found", component)
	}
	doc := Document{Version: "2012-10-17"}
	for _, n := range statements {
		n, err := ifBranch(n, target)
		if err != nil {
			return Document{}, fmt.Errorf("%s policy: %w", component, err)
		}
		if n == nil {
			continue // AWS::NoValue: no statement
		}
		s, err := statement(n, target)
		if err != nil {
			return Document{}, fmt.Errorf("%s policy, statement at line %d: %w", component, n.Line, err)
		}
		doc.Statement = append(doc.Statement, s)
	}
	return doc, nil
}

// JSON is the document as compact JSON, as S3 and STS take it.
func (d Document) JSON() string {
	b, err := json.Marshal(d)
	if err != nil {
		panic(err) // only strings and maps of strings
	}
	return string(b)
}

// ifBranch is the statement n stands for: n itself, or, for an
// "!If [Condition, statement, !Ref AWS::NoValue]", the branch the target's
// condition picks (nil for AWS::NoValue).
func ifBranch(n *yaml.Node, t Target) (*yaml.Node, error) {
	args := n
	if n.Kind == yaml.MappingNode && len(n.Content) == 2 && n.Content[0].Value == "Fn::If" {
		args = n.Content[1]
	} else if n.Tag != "!If" {
		return n, nil
	}
	if args.Kind != yaml.SequenceNode || len(args.Content) != 3 || args.Content[0].Kind != yaml.ScalarNode {
		return nil, fmt.Errorf("line %d: want Fn::If [condition, statement, statement or AWS::NoValue]", n.Line)
	}
	branch := args.Content[2]
	if t.Conditions[args.Content[0].Value] {
		branch = args.Content[1]
	}
	if branch.Kind == yaml.ScalarNode && branch.Tag == "!Ref" && branch.Value == "AWS::NoValue" {
		return nil, nil
	}
	if c := child(branch, "Ref"); c != nil && c.Value == "AWS::NoValue" {
		return nil, nil
	}
	return branch, nil
}

func statement(n *yaml.Node, t Target) (Statement, error) {
	var s Statement
	if n.Kind != yaml.MappingNode {
		return s, errors.New("not a mapping")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		var err error
		switch k {
		case "Sid":
			s.Sid = v.Value
		case "Effect":
			s.Effect = v.Value
		case "Action":
			s.Action, err = strings1(v, t)
		case "Resource":
			s.Resource, err = strings1(v, t)
		case "Condition":
			s.Condition, err = condition(v, t)
		default:
			err = fmt.Errorf("field %s is not supported here", k)
		}
		if err != nil {
			return s, fmt.Errorf("%s: %w", k, err)
		}
	}
	if s.Effect != "Allow" && s.Effect != "Deny" {
		return s, fmt.Errorf("Effect %q", s.Effect)
	}
	return s, nil
}

// strings1 reads a string or a list of strings.
func strings1(n *yaml.Node, t Target) ([]string, error) {
	if n.Kind == yaml.SequenceNode {
		var out []string
		for _, c := range n.Content {
			v, err := value(c, t)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	v, err := value(n, t)
	return []string{v}, err
}

func condition(n *yaml.Node, t Target) (map[string]map[string]string, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errors.New("not a mapping")
	}
	out := map[string]map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		op, body := n.Content[i].Value, n.Content[i+1]
		if body.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s: not a mapping", op)
		}
		out[op] = map[string]string{}
		for j := 0; j+1 < len(body.Content); j += 2 {
			v, err := value(body.Content[j+1], t)
			if err != nil {
				return nil, err
			}
			out[op][body.Content[j].Value] = v
		}
	}
	return out, nil
}

var subRef = regexp.MustCompile(`\$\{([^}]*)\}`)

// value resolves one scalar: plain, !Sub or !GetAtt, with the references
// the template's policies use.
func value(n *yaml.Node, t Target) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("line %d: want a string", n.Line)
	}
	refs := map[string]string{
		"OriginalsBucket.Arn": t.BucketARN(),
		"KeyPrefix":           t.KeyPrefix,
		"LedgerTable.Arn":     t.TableARN(),
		"AWS::Partition":      targetPartition,
		"AWS::AccountId":      targetAccount,
		"AWS::Region":         targetRegion,
	}
	if t.Distribution != "" {
		refs["CdnDistribution"] = t.Distribution
	}
	switch n.Tag {
	case "!!str", "":
		return n.Value, nil
	case "!Ref":
		v, ok := t.Parameters[n.Value]
		if !ok {
			return "", fmt.Errorf("line %d: unknown reference !Ref %s (not in Target.Parameters)", n.Line, n.Value)
		}
		return v, nil
	case "!GetAtt":
		v, ok := refs[n.Value]
		if !ok {
			return "", fmt.Errorf("line %d: unknown reference !GetAtt %s", n.Line, n.Value)
		}
		return v, nil
	case "!Sub":
		var err error
		out := subRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			name := m[2 : len(m)-1]
			v, ok := refs[name]
			if !ok && err == nil {
				err = fmt.Errorf("line %d: unknown reference ${%s}", n.Line, name)
			}
			return v
		})
		return out, err
	default:
		return "", fmt.Errorf("line %d: %s is not supported in a policy here", n.Line, n.Tag)
	}
}

// Child returns the value of key in a mapping node, or nil; the local
// edge reads the template's cache policy with it too.
func Child(n *yaml.Node, key string) *yaml.Node { return child(n, key) }

// child returns the value of key in a mapping node, or nil.
func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// Without returns the template with action taken out of what it grants
// component: out of each Allow statement of the component's policy that
// names it, and a statement left with no action is removed. The result is
// for a test run only (YAML comments may move).
func Without(template []byte, component, action string) ([]byte, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(template, &root); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	if len(root.Content) != 1 {
		return nil, errors.New("template: not a YAML document")
	}
	resources := child(root.Content[0], "Resources")
	var lists []*yaml.Node // the Statement sequences of the component
	switch component {
	case Agent, Audit, Eraser:
		name := managedPolicies[component]
		lists = append(lists, child(child(child(child(resources, name), "Properties"), "PolicyDocument"), "Statement"))
	case Resolver:
		if policies := child(child(child(resources, "ResolverFunction"), "Properties"), "Policies"); policies != nil {
			for _, p := range policies.Content {
				lists = append(lists, child(p, "Statement"))
			}
		}
	case Cloudfront:
		st, err := cloudFrontNode(resources)
		if err != nil {
			return nil, err
		}
		// A list of its own: the statement stays where it is (inside the
		// template's !If), only its Action changes.
		lists = append(lists, &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{st}})
	default:
		return nil, fmt.Errorf("unknown component %q", component)
	}
	removed := 0
	for _, list := range lists {
		if list == nil {
			continue
		}
		var kept []*yaml.Node
		for _, item := range list.Content {
			// A statement written as !If [Condition, statement, ...]:
			// the action goes from the statement of its "then" branch,
			// and the !If goes with it when that is left with none.
			st := item
			if item.Tag == "!If" && item.Kind == yaml.SequenceNode && len(item.Content) == 3 {
				st = item.Content[1]
			}
			actions := child(st, "Action")
			switch {
			case actions == nil:
			case actions.Kind == yaml.ScalarNode && actions.Value == action:
				removed++
				continue // the statement's only action
			case actions.Kind == yaml.SequenceNode:
				var left []*yaml.Node
				for _, a := range actions.Content {
					if a.Value == action {
						removed++
						continue
					}
					left = append(left, a)
				}
				if len(left) == 0 {
					continue
				}
				actions.Content = left
			}
			kept = append(kept, item)
		}
		list.Content = kept
	}
	if removed == 0 {
		return nil, fmt.Errorf("the template grants %s no %s", component, action)
	}
	if component == Cloudfront && len(lists[0].Content) == 0 {
		return nil, fmt.Errorf("%s would be left with no action without %s", cloudFrontSid, action)
	}
	return yaml.Marshal(&root)
}

// cloudFrontSid is the bucket policy statement that lets CloudFront read.
const cloudFrontSid = "AllowCloudFrontRead"

// cloudFrontNode returns the bucket policy's AllowCloudFrontRead statement
// as the template has it with Cdn=on: the statement is the "then" branch
// of an !If on the CdnOn condition.
func cloudFrontNode(resources *yaml.Node) (*yaml.Node, error) {
	list := child(child(child(child(resources, "OriginalsBucketPolicy"), "Properties"), "PolicyDocument"), "Statement")
	if list == nil {
		return nil, errors.New("template: OriginalsBucketPolicy has no statements")
	}
	for _, n := range list.Content {
		if n.Tag == "!If" && n.Kind == yaml.SequenceNode && len(n.Content) == 3 && n.Content[0].Value == "CdnOn" {
			n = n.Content[1]
		}
		if sid := child(n, "Sid"); sid != nil && sid.Value == cloudFrontSid {
			return n, nil
		}
	}
	return nil, fmt.Errorf("template: OriginalsBucketPolicy has no statement %s (under !If CdnOn)", cloudFrontSid)
}

// cloudFrontStatement returns AllowCloudFrontRead as the identity policy
// of the local edge's credentials: its Principal (CloudFront's service
// principal) and its Condition (AWS:SourceArn, the stack's distribution)
// are left out, because the edge is that distribution and the only
// caller with these credentials. Any other principal or condition is an
// error: a change the stack cannot follow must not pass silently.
func cloudFrontStatement(resources *yaml.Node) (*yaml.Node, error) {
	n, err := cloudFrontNode(resources)
	if err != nil {
		return nil, err
	}
	if svc := child(child(n, "Principal"), "Service"); svc == nil || svc.Value != "cloudfront.amazonaws.com" || len(child(n, "Principal").Content) != 2 {
		return nil, fmt.Errorf("%s (line %d): want Principal: {Service: cloudfront.amazonaws.com}", cloudFrontSid, n.Line)
	}
	if cond := child(n, "Condition"); cond != nil {
		eq := child(cond, "StringEquals")
		if len(cond.Content) != 2 || eq == nil || len(eq.Content) != 2 || eq.Content[0].Value != "AWS:SourceArn" {
			return nil, fmt.Errorf("%s (line %d): want no Condition but StringEquals AWS:SourceArn", cloudFrontSid, n.Line)
		}
	}
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: n.Tag, Line: n.Line}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; k != "Principal" && k != "Condition" {
			out.Content = append(out.Content, n.Content[i], n.Content[i+1])
		}
	}
	return out, nil
}

// KMSKeyARN is the ARN the local stack's KMS key (its --kms) stands in
// for: the template's KmsKeyArn parameter.
const KMSKeyARN = "arn:" + targetPartition + ":kms:" + targetRegion + ":" + targetAccount + ":key/offload-site-key"

// KMS is what the template grants a component on the site's KMS key with
// KmsKeyArn set.
type KMS struct {
	Decrypt, GenerateDataKey bool
}

// KMSGrants returns what template grants component on the site's KMS key
// when KmsKeyArn is set (the condition KmsOn), with the key's ARN for the
// parameter. The local stack gives it to the AWS shim, since MinIO checks
// no KMS permission.
//
// CloudFront is the exception: its kms:Decrypt is not the template's to
// give. The key is the operator's, and Origin Access Control reads an
// SSE-KMS object only when the key's policy lets the service principal
// cloudfront.amazonaws.com decrypt for the distribution (AWS:SourceArn),
// a statement docs/deploy-aws.md gives the operator to add ("SSE-KMS" in
// https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-restricting-access-to-s3.html).
// The stack stands in for a deployment that followed it.
func KMSGrants(template []byte, component string) (KMS, error) {
	if component == Cloudfront {
		return KMS{Decrypt: true}, nil
	}
	t := Target{Bucket: "b", Table: "t", Conditions: map[string]bool{"KmsOn": true},
		Parameters: map[string]string{"KmsKeyArn": KMSKeyARN}}
	doc, err := Policy(template, component, t)
	if err != nil {
		return KMS{}, err
	}
	return KMS{Decrypt: doc.Allows("kms:Decrypt", KMSKeyARN), GenerateDataKey: doc.Allows("kms:GenerateDataKey", KMSKeyARN)}, nil
}
