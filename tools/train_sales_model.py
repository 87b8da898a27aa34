"""Train the sales model on models/sales.csv and write models/sales.json.

A few candidate regressors are fitted on the same training split; the one
with the best R² on the held-out rows is exported. Its metrics are those of
the predictions wren serves (rounded and clamped), and the file has no
timestamp, so the same data and package versions give the same file.

    .venv/bin/python tools/train_sales_model.py     (or: make sales-model)
"""

import csv
from pathlib import Path

import numpy as np
import sklearn
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

import export_sklearn
import gen_sales_data

MODELS = Path(__file__).resolve().parent.parent / "models"
DATA = MODELS / "sales.csv"
OUTPUT = MODELS / "sales.json"
VERSION = "1.0.0"
SPLIT_SEED = 7
TEST_FRACTION = 0.2

MONTHS = gen_sales_data.MONTHS
FEATURES = [
    {"name": "seller_available", "type": "integer", "min": 0, "max": 1000},
    {
        "name": "month",
        "type": "category",
        "encoding": "one_hot",
        "values": MONTHS,
        # "may" is already a value, and an alias may not repeat one.
        "aliases": {
            **{m[:3]: m for m in MONTHS if m[:3] != m},
            **{str(i): m for i, m in enumerate(MONTHS, start=1)},
        },
    },
    {"name": "customer_visiting_website", "type": "integer", "min": 0, "max": 1000000},
]
OUTPUT_SECTION = {"round": True, "clamp": {"min": 2000, "max": 5000}}

# Bounded in size (at most 200 trees of depth 4) so models/sales.json stays small.
CANDIDATES = [
    Ridge(alpha=1.0),
    GradientBoostingRegressor(n_estimators=200, max_depth=3, learning_rate=0.05, random_state=0),
    GradientBoostingRegressor(n_estimators=150, max_depth=4, learning_rate=0.05, random_state=0),
]


def load():
    with DATA.open(encoding="utf-8") as file:
        lines = [line for line in file if not line.startswith("#")]
    rows = []
    for record in csv.DictReader(lines):
        rows.append(
            {
                "seller_available": int(record["seller_available"]),
                "month": record["month"],
                "customer_visiting_website": int(record["customer_visiting_website"]),
                "sales": float(record["sales"]),
            }
        )
    return rows


def describe(estimator):
    # sklearn's repr wraps long parameter lists over lines.
    return " ".join(repr(estimator).split())


def main():
    rows = load()
    X = export_sklearn.encode(rows, FEATURES)
    y = np.array([row["sales"] for row in rows])
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED
    )

    best = None
    for candidate in CANDIDATES:
        candidate.fit(X_train, y_train)
        served = export_sklearn.apply_output(candidate.predict(X_test), OUTPUT_SECTION)
        r2 = r2_score(y_test, served)
        rmse = float(np.sqrt(mean_squared_error(y_test, served)))
        print(f"{describe(candidate)}: held-out R² {r2:.4f}, RMSE {rmse:.1f}")
        if best is None or r2 > best[1]:
            best = (candidate, r2, rmse)

    model, r2, rmse = best
    seed = gen_sales_data.SEED
    training = {
        "dataset": f"models/sales.csv (synthetic, tools/gen_sales_data.py seed {seed})",
        "algorithm": describe(model),
        "rows": len(rows),
        "train_rows": len(y_train),
        "test_rows": len(y_test),
        "metrics": {"r2": round(r2, 4), "rmse": round(rmse, 2)},
        "scikit_learn": sklearn.__version__,
    }
    document = export_sklearn.export(
        model, FEATURES, "sales", VERSION, output=OUTPUT_SECTION, training=training
    )
    export_sklearn.write(document, OUTPUT)
    print(f"chose {describe(model)}: held-out R² {r2:.4f}, RMSE {rmse:.1f}")
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
