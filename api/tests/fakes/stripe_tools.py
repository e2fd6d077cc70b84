"""The `stripe` Python package's side of paycenter's Stripe tests.

  sign SECRET            (payload on stdin)  -> a Stripe-Signature header made by the package
  verify SECRET HEADER   (payload on stdin)  -> exit 0 when the package accepts the signature
  pay API_BASE INTENT_ID                     -> confirms the PaymentIntent with a test card
"""
import sys
import time

import stripe


def main():
    command = sys.argv[1]
    if command == "sign":
        payload = sys.stdin.read()
        timestamp = int(time.time())
        signature = stripe.WebhookSignature._compute_signature("%d.%s" % (timestamp, payload), sys.argv[2])
        print("t=%d,v1=%s" % (timestamp, signature))
        return 0
    if command == "verify":
        payload = sys.stdin.read()
        try:
            stripe.WebhookSignature.verify_header(payload, sys.argv[3], sys.argv[2], tolerance=300)
        except stripe.SignatureVerificationError as error:
            print(error, file=sys.stderr)
            return 1
        return 0
    if command == "pay":
        stripe.api_key = "sk_test_paycenter"
        stripe.api_base = sys.argv[2]
        method = stripe.PaymentMethod.create(type="card", card={
            "number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"})
        stripe.PaymentIntent.modify(sys.argv[3], payment_method=method.id)
        intent = stripe.PaymentIntent.confirm(sys.argv[3])
        print(intent.status)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
