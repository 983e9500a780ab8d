package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"
)

// The Secrets Manager stand-in answers GetSecretValue, the one Secrets
// Manager call the project makes (the resolver reads its CloudFront key),
// as the API reference documents it:
// https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html
//   - the AWS JSON 1.1 protocol: POST / with X-Amz-Target
//     secretsmanager.GetSecretValue and a JSON body {"SecretId": ...};
//   - the answer {"ARN", "Name", "SecretString", "VersionId",
//     "VersionStages": ["AWSCURRENT"], "CreatedDate"} for the current version;
//   - ResourceNotFoundException for an unknown SecretId, and
//     AccessDeniedException for a caller not allowed, both HTTP 400 with
//     {"__type", "message"} (Common Errors,
//     https://docs.aws.amazon.com/secretsmanager/latest/apireference/CommonErrors.html);
//     any other operation is InvalidAction.
//
// It is not Secrets Manager, and differs (docs/reliability.md, "Production
// is not the local stack"): the caller is the access key named in the
// SigV4 Authorization header, whose signature is not checked; who may read
// is the --allow list, not IAM; a secret is found by the exact id it was
// given (AWS also takes the name for an ARN, and a partial ARN); no
// VersionId or VersionStage may be asked for; no KMS.

const secretsUsage = `usage: stackctl secrets-manager --listen ADDR --secret ID=FILE [--secret ID=FILE ...] [--allow ACCESS_KEY,...]`

// secretsStandIn is the stand-in's state: the secrets by id (the value is
// read from a file, so it is never on a command line) and the access keys
// that may read them.
type secretsStandIn struct {
	secrets map[string]string
	allowed map[string]bool
	created time.Time
}

type secretFlags map[string]string

func (s secretFlags) String() string { return fmt.Sprint(len(s), " secrets") }

func (s secretFlags) Set(v string) error {
	id, file, ok := strings.Cut(v, "=")
	if !ok || id == "" || file == "" {
		return errors.New("want ID=FILE")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	s[id] = string(b)
	return nil
}

func runSecretsManager(args []string) (int, error) {
	fs := flag.NewFlagSet("secrets-manager", flag.ContinueOnError)
	listen := fs.String("listen", "", "loopback address to serve on")
	secrets := secretFlags{}
	fs.Var(secrets, "secret", "a secret: its id (ARN or name) = the file holding its SecretString (repeatable)")
	allow := fs.String("allow", "", "comma-separated access keys that may read every secret")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	if *listen == "" || len(secrets) == 0 || fs.NArg() > 0 {
		return 2, errors.New(secretsUsage)
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		return 2, fmt.Errorf("--listen %q: want a loopback address", *listen)
	}
	sm := &secretsStandIn{secrets: secrets, allowed: keySet(*allow), created: time.Now()}
	logger := log.New(os.Stderr, "secrets-manager: ", log.LstdFlags)
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return 1, err
	}
	srv := &http.Server{Handler: sm, ErrorLog: logger, ReadHeaderTimeout: 30 * time.Second}
	logger.Printf("serving GetSecretValue on %s: %d secrets, %d access keys allowed", *listen, len(secrets), len(sm.allowed))
	return serveUntilSignal(srv, func() error { return srv.Serve(l) })
}

// credentialKey is the access key of a SigV4 Authorization header.
var credentialKey = regexp.MustCompile(`Credential=([^/,\s]+)/`)

func (sm *secretsStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/" || r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" {
		secretsError(w, "InvalidAction", "only GetSecretValue is served here")
		return
	}
	var in struct {
		SecretId, VersionId, VersionStage string
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil || in.SecretId == "" {
		secretsError(w, "InvalidParameterException", "SecretId is required")
		return
	}
	if in.VersionId != "" || in.VersionStage != "" && in.VersionStage != "AWSCURRENT" {
		secretsError(w, "InvalidParameterException", "this stand-in serves only the current version")
		return
	}
	var caller string
	if m := credentialKey.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		caller = m[1]
	}
	if !sm.allowed[caller] {
		log.Printf("secrets-manager: GetSecretValue %s by %q: AccessDeniedException", in.SecretId, caller)
		secretsError(w, "AccessDeniedException", fmt.Sprintf("User: %s is not authorized to perform: secretsmanager:GetSecretValue on resource: %s", caller, in.SecretId))
		return
	}
	value, ok := sm.secrets[in.SecretId]
	if !ok {
		secretsError(w, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
		return
	}
	name := in.SecretId
	if i := strings.LastIndex(name, ":secret:"); i >= 0 {
		name = name[i+len(":secret:"):]
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"ARN": in.SecretId, "Name": name, "SecretString": value,
		"VersionId": "00000000-0000-0000-0000-000000000001", "VersionStages": []string{"AWSCURRENT"},
		"CreatedDate": float64(sm.created.Unix()),
	})
}

func secretsError(w http.ResponseWriter, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}
