"""Fit the model behind the Flask seed's /predict and pickle it, as a seed
project ships its trained model for the app to load.

It is the model wren serves: the estimator named in models/sales.json's
`training.algorithm`, taken from tools/train_sales_model.py's candidates and
fitted on the same split of models/sales.csv, with the features and output
rules (round, clamp to 2000..5000) of models/sales.json. The held-out R² is
checked against the one recorded there, so a different model fails here
rather than skewing the comparison.

    target/bench/flask-venv/bin/python bench/flask-seed/train_model.py OUT.pickle
"""

import json
import pickle
import sys
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import export_sklearn  # noqa: E402  (found through the path above)
import train_sales_model as training  # noqa: E402


def main(out_path):
    served = json.loads((REPO / "models" / "sales.json").read_text(encoding="utf-8"))
    algorithm = served["training"]["algorithm"]
    matches = [c for c in training.CANDIDATES if training.describe(c) == algorithm]
    if not matches:
        sys.exit(f"no candidate in tools/train_sales_model.py is {algorithm}")
    model = clone(matches[0])

    rows = training.load()
    X = export_sklearn.encode(rows, served["features"])
    y = np.array([row["sales"] for row in rows])
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=training.TEST_FRACTION, random_state=training.SPLIT_SEED
    )
    model.fit(X_train, y_train)

    # The score tools/train_sales_model.py recorded, on the same rows.
    answers = export_sklearn.apply_output(model.predict(X_test), served["output"])
    r2 = round(float(r2_score(y_test, answers)), 4)
    if r2 != served["training"]["metrics"]["r2"]:
        sys.exit(f"fitted {algorithm} scores R² {r2}, models/sales.json says "
                 f"{served['training']['metrics']['r2']}: not the model wren serves")

    with open(out_path, "wb") as file:
        pickle.dump({"model": model, "features": served["features"], "output": served["output"]}, file)
    print(f"{out_path}: {algorithm}, held-out R² {r2}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT.pickle")
    main(sys.argv[1])
