#!/usr/bin/env bash
# Packer post-processor: store the baked AMI id in the SSM parameter the CDK stack reads
# (`amiParameterName`, default /cvstack/ami-id).
#
#   publish-ami-id.sh MANIFEST PARAMETER REGION
set -euo pipefail

MANIFEST="${1:?usage: publish-ami-id.sh MANIFEST PARAMETER REGION}"
PARAMETER="${2:?usage: publish-ami-id.sh MANIFEST PARAMETER REGION}"
REGION="${3:?usage: publish-ami-id.sh MANIFEST PARAMETER REGION}"

# The manifest post-processor appends one build per run; the last one is this bake.
# artifact_id is "<region>:<ami id>".
ami="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["builds"][-1]["artifact_id"].split(":")[1])' "$MANIFEST")"
[[ "$ami" == ami-* ]] || { echo "publish-ami-id: no AMI id in $MANIFEST" >&2; exit 1; }
aws ssm put-parameter --region "$REGION" --name "$PARAMETER" --type String \
  --data-type aws:ec2:image --value "$ami" --overwrite >/dev/null
echo "publish-ami-id: $PARAMETER = $ami ($REGION)"
