# Recomputes an MSK IAM token's SigV4 query signature with botocore (the library AWS's own
# aws-msk-iam-sasl-signer-python signs with), at the instant the token carries, and prints both
# query strings as JSON: tests/tests/stack/gift_publisher.rs compares them.
#
#   python msk_iam_botocore.py TOKEN ACCESS_KEY SECRET_KEY SESSION_TOKEN
import base64, datetime, json, sys
from urllib.parse import urlsplit, parse_qsl
import botocore.auth as auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

token, key, secret, session = sys.argv[1:5]
url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
ours = dict(parse_qsl(urlsplit(url).query))
at = datetime.datetime.strptime(ours["X-Amz-Date"], "%Y%m%dT%H%M%SZ")

class Frozen(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return at
    @classmethod
    def now(cls, tz=None):
        return at.replace(tzinfo=tz) if tz else at

auth.datetime.datetime = Frozen
region = ours["X-Amz-Credential"].split("/")[2]
req = AWSRequest(method="GET", url=f"https://kafka.{region}.amazonaws.com/?Action=kafka-cluster%3AConnect")
auth.SigV4QueryAuth(Credentials(key, secret, session or None), "kafka-cluster", region, expires=900).add_auth(req)
theirs = dict(parse_qsl(urlsplit(req.url).query))
print(json.dumps({"ours": ours, "theirs": theirs}))
