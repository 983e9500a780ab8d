package setup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// StackOutputs is what init takes from the SAM stack: the values of its
// outputs and the region it lives in.
type StackOutputs struct {
	Bucket       string // output BucketName
	Table        string // output TableName
	ResolverBase string // output ResolverBase, or ResolverUrl without its trailing slash
	Region       string // from the StackId ARN
	// CdnDistribution is the output CdnDistributionId: empty unless the
	// stack has Cdn=on.
	CdnDistribution string
}

// describeStacks is the part of "aws cloudformation describe-stacks"'s JSON
// init reads (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeStacks.html,
// the Stack type: StackId, StackName, Outputs of OutputKey/OutputValue;
// the AWS CLI's own example output is in aws/aws-cli,
// awscli/examples/cloudformation/describe-stacks.rst).
type describeStacks struct {
	Stacks []struct {
		StackID   string `json:"StackId"`
		StackName string `json:"StackName"`
		Outputs   []struct {
			OutputKey   string `json:"OutputKey"`
			OutputValue string `json:"OutputValue"`
		} `json:"Outputs"`
	} `json:"Stacks"`
}

// ParseStackOutputs reads the JSON "aws cloudformation describe-stacks
// --stack-name NAME" prints. It wants exactly one stack. ResolverBase is
// taken from the ResolverBase output, or from ResolverUrl (stacks deployed
// before ResolverBase existed) with its trailing slash removed. A missing
// output is left empty, for a flag to supply.
func ParseStackOutputs(r io.Reader) (StackOutputs, error) {
	var d describeStacks
	dec := json.NewDecoder(r)
	if err := dec.Decode(&d); err != nil {
		return StackOutputs{}, fmt.Errorf("stack outputs: not the JSON of aws cloudformation describe-stacks: %w", err)
	}
	switch len(d.Stacks) {
	case 0:
		return StackOutputs{}, errors.New(`stack outputs: no "Stacks" in the JSON (want the output of aws cloudformation describe-stacks --stack-name NAME)`)
	case 1:
	default:
		names := make([]string, len(d.Stacks))
		for i, s := range d.Stacks {
			names[i] = s.StackName
		}
		return StackOutputs{}, fmt.Errorf("stack outputs: %d stacks (%s): pass --stack-name NAME to describe-stacks", len(d.Stacks), strings.Join(names, ", "))
	}
	st := d.Stacks[0]
	var o StackOutputs
	var resolverURL string
	for _, out := range st.Outputs {
		switch out.OutputKey {
		case "BucketName":
			o.Bucket = out.OutputValue
		case "TableName":
			o.Table = out.OutputValue
		case "ResolverBase":
			o.ResolverBase = out.OutputValue
		case "ResolverUrl":
			resolverURL = out.OutputValue
		case "CdnDistributionId":
			o.CdnDistribution = out.OutputValue
		}
	}
	if o.ResolverBase == "" && resolverURL != "" {
		o.ResolverBase = strings.TrimSuffix(resolverURL, "/")
	}
	if st.StackID != "" {
		region, err := regionOfStackID(st.StackID)
		if err != nil {
			return StackOutputs{}, err
		}
		o.Region = region
	}
	return o, nil
}

// regionOfStackID returns the region field of a stack ARN,
// arn:PARTITION:cloudformation:REGION:ACCOUNT:stack/NAME/ID
// (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html).
func regionOfStackID(id string) (string, error) {
	f := strings.SplitN(id, ":", 6)
	if len(f) != 6 || f[0] != "arn" || f[2] != "cloudformation" || f[3] == "" {
		return "", fmt.Errorf("stack outputs: StackId %q is not a CloudFormation stack ARN (arn:aws:cloudformation:REGION:ACCOUNT:stack/NAME/ID)", id)
	}
	return f[3], nil
}
