"""The seed projects' API, written for `make bench` as their authors would,
to compare with wren's: Flask, served by gunicorn.

- GET /status: "Alive!".
- POST /login: the seeds' check, a name and its password kept in plain text
  (here the one account SEED_USER="name:password") and compared as they are;
  the answer is the seeds' sentence.
- GET /predict/<seller_available>/<month>/<customer_visiting_website>: a
  scikit-learn model loaded from a pickle at start (SEED_MODEL, written by
  train_model.py: the estimator models/sales.json was exported from, so it
  answers what wren answers) and asked for each request.
- POST /event ("Practice Flask"): Decimal amounts and every user's history
  in a dict in memory (nothing durable, and each gunicorn worker process has
  its own dict).

Run with: SEED_USER=name:password SEED_MODEL=model.pickle \
    gunicorn --chdir bench/flask-seed app:app
"""

import os
import pickle
import sys
import threading
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from flask import Flask, jsonify, request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from export_sklearn import apply_output, encode  # noqa: E402  (tools/, by the path above)

app = Flask(__name__)

USERS = dict([os.environ["SEED_USER"].split(":", 1)])

with open(os.environ["SEED_MODEL"], "rb") as model_file:
    MODEL = pickle.load(model_file)


@dataclass(frozen=True)
class Event:
    type: str
    amount: Decimal
    time: int


# user_id -> that user's events, oldest first. The lock matters under
# gunicorn's threaded workers, whose threads share the dict.
history = defaultdict(list)
history_lock = threading.Lock()


def is_int(value):
    # JSON true/false arrive as bool, which is a subclass of int.
    return isinstance(value, int) and not isinstance(value, bool)


class InvalidEvent(Exception):
    def __init__(self, problems):
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_event(payload):
    """(user_id, Event) from the JSON body, or raise InvalidEvent listing
    every problem found."""
    if not isinstance(payload, dict):
        raise InvalidEvent(["the body must be a JSON object (Content-Type: application/json)"])
    problems = []
    kind = payload.get("type")
    if kind not in ("deposit", "withdraw"):
        problems.append('type must be "deposit" or "withdraw"')
    amount = None
    raw_amount = payload.get("amount")
    if not isinstance(raw_amount, str):
        problems.append('amount must be a decimal string, e.g. "42.00"')
    else:
        try:
            amount = Decimal(raw_amount)
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite() or amount <= 0:
            problems.append('amount must be a positive decimal string, e.g. "42.00"')
    user_id = payload.get("user_id")
    if not is_int(user_id):
        problems.append("user_id must be an integer")
    time = payload.get("time")
    if not is_int(time) or time < 0:
        problems.append("time must be a non-negative integer (milliseconds)")
    if problems:
        raise InvalidEvent(problems)
    return user_id, Event(kind, amount, time)


def alert_codes(events, event):
    """The codes that fire for event, the last of the user's events."""
    codes = []
    if event.type == "withdraw" and event.amount > 100:
        codes.append(1100)
    if len(events) >= 3 and all(e.type == "withdraw" for e in events[-3:]):
        codes.append(30)
    if event.type == "deposit":
        deposits = [e for e in events if e.type == "deposit"]
        if len(deposits) >= 3 and deposits[-3].amount < deposits[-2].amount < deposits[-1].amount:
            codes.append(300)
        recent = sum(d.amount for d in deposits if event.time - d.time <= 30_000)
        if recent > 200:
            codes.append(123)
    if len(events) >= 6 and event.time - events[-6].time <= 60_000:
        codes.append(500)
    return sorted(codes)


@app.get("/status")
def status():
    return "Alive!"


@app.post("/login")
def login():
    fields = request.get_json(silent=True) if request.is_json else request.form
    if not isinstance(fields, dict):  # a JSON body that is not an object
        fields = {}
    username, password = fields.get("username"), fields.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return jsonify(error="invalid_login", message="username and password are required"), 400
    if USERS.get(username) != password:
        return jsonify(error="unauthorized", message="wrong username or password"), 401
    return f"Login success for user {username} with password of length: {len(password)}!"


@app.get("/predict/<int:seller_available>/<month>/<int:customer_visiting_website>")
def predict(seller_available, month, customer_visiting_website):
    row = {
        "seller_available": seller_available,
        "month": month,
        "customer_visiting_website": customer_visiting_website,
    }
    try:
        features = encode([row], MODEL["features"])
    except ValueError as err:
        return jsonify(error="invalid_input", message=str(err)), 400
    prediction = apply_output(MODEL["model"].predict(features), MODEL["output"])[0]
    return str(int(prediction))


@app.post("/event")
def post_event():
    try:
        user_id, event = parse_event(request.get_json(silent=True))
    except InvalidEvent as err:
        return jsonify(error="invalid_event", details=err.problems), 400
    with history_lock:
        events = history[user_id]
        events.append(event)
        codes = alert_codes(events, event)
    return jsonify(alert=bool(codes), alert_codes=codes, user_id=user_id)
