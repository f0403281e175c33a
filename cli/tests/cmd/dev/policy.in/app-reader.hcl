# Read the app's secrets, nothing else.
path "secret/data/policy-app/*" {
  capabilities = ["read"]
}
