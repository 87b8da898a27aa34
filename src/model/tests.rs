//! Loader rules (one test each) and evaluation of small hand-built models
//! with known answers.

use serde_json::{Value, json};

use super::*;

/// A valid linear model over every kind of feature: encoded row is
/// [x, t, one_hot(color: red, green, blue)..., size(ordinal)].
fn linear_file() -> Value {
    json!({
        "format": "wren-model/1",
        "name": "demo",
        "version": "1.0",
        "features": [
            {"type": "integer", "name": "x", "min": 0, "max": 100},
            {"type": "number", "name": "t", "min": -1.5},
            {"type": "category", "name": "color", "encoding": "one_hot",
             "values": ["red", "green", "blue"], "aliases": {"r": "red"}},
            {"type": "category", "name": "size", "encoding": "ordinal",
             "values": ["s", "m", "l"]}
        ],
        "model": {"kind": "linear", "intercept": 1.0,
                  "coefficients": [2.0, 10.0, 100.0, 200.0, 300.0, 1000.0]}
    })
}

/// Two boosted stumps over [x, y].
fn trees_file() -> Value {
    json!({
        "format": "wren-model/1",
        "name": "trees",
        "version": "2",
        "features": [
            {"type": "number", "name": "x"},
            {"type": "number", "name": "y"}
        ],
        "model": {
            "kind": "tree_ensemble", "aggregate": "sum", "base_score": 10.0, "learning_rate": 0.5,
            "trees": [
                {"feature": [0, -2, -2], "threshold": [2.5, -2.0, -2.0],
                 "left": [1, -1, -1], "right": [2, -1, -1], "value": [0.0, -4.0, 6.0]},
                {"feature": [1, -2, -2], "threshold": [0.0, -2.0, -2.0],
                 "left": [1, -1, -1], "right": [2, -1, -1], "value": [0.0, 1.0, 3.0]}
            ]
        },
        "output": {"round": true, "clamp": {"min": 0.0, "max": 14.0}}
    })
}

fn load(file: &Value) -> Result<Model, String> {
    Model::from_json(file.to_string().as_bytes())
}

/// The loader's error after `change` is applied to `file`.
fn refused(mut file: Value, change: impl FnOnce(&mut Value)) -> String {
    change(&mut file);
    load(&file).expect_err("the loader should refuse this file")
}

fn predict(model: &Model, values: &[(&str, Value)]) -> f64 {
    let inputs: Vec<Input> = model
        .features
        .iter()
        .map(|feature| {
            let (_, value) = values.iter().find(|(n, _)| *n == feature.name).unwrap();
            feature.parse_json(value).unwrap()
        })
        .collect();
    let mut row = vec![f64::NAN; model.width()];
    model.encode(&inputs, &mut row);
    model.predict(&row)
}

#[test]
fn linear_models_encode_every_feature_kind() {
    let model = load(&linear_file()).unwrap();
    assert_eq!(model.width(), 6);
    let value = predict(
        &model,
        &[
            ("x", json!(3)),
            ("t", json!(0.5)),
            ("color", json!("GREEN")),
            ("size", json!("l")),
        ],
    );
    assert_eq!(value, 1.0 + 6.0 + 5.0 + 200.0 + 2.0 * 1000.0);
    let aliased = predict(
        &model,
        &[
            ("x", json!(0)),
            ("t", json!(-1.5)),
            ("color", json!("R")),
            ("size", json!("s")),
        ],
    );
    assert_eq!(aliased, 1.0 - 15.0 + 100.0);
}

#[test]
fn tree_ensembles_and_output_processing() {
    let model = load(&trees_file()).unwrap();
    // 10 + 0.5 * (-4 + 1) = 8.5, rounded away from zero to 9.
    assert_eq!(predict(&model, &[("x", json!(1)), ("y", json!(-1))]), 9.0);
    // 10 + 0.5 * (6 + 3) = 14.5 -> 15, clamped to 14.
    assert_eq!(predict(&model, &[("x", json!(3)), ("y", json!(1))]), 14.0);
    assert!(model.rounds() && model.is_deterministic());
}

#[test]
fn inputs_are_checked_by_type_and_range() {
    let model = load(&linear_file()).unwrap();
    let (_, x) = model.feature("x").unwrap();
    assert_eq!(x.parse_json(&json!(100)), Ok(Input::Number(100.0)));
    assert_eq!(x.parse_json(&json!(7.0)), Ok(Input::Number(7.0)));
    assert!(x.parse_json(&json!(101)).unwrap_err().contains("0 to 100"));
    assert!(
        x.parse_json(&json!(1.5))
            .unwrap_err()
            .contains("whole number")
    );
    assert!(
        x.parse_json(&json!("3"))
            .unwrap_err()
            .contains("not a string")
    );
    assert_eq!(x.parse_text("42"), Ok(Input::Number(42.0)));
    assert!(x.parse_text(" 42").is_err());
    assert!(x.parse_text("-1").is_err());
    let (_, t) = model.feature("t").unwrap();
    assert!(
        t.parse_json(&json!(-2))
            .unwrap_err()
            .contains("-1.5 to any")
    );
    assert!(t.parse_text("NaN").is_err());
    let (_, color) = model.feature("color").unwrap();
    let unknown = color.parse_json(&json!("mauve")).unwrap_err();
    assert_eq!(unknown, "unknown color 'mauve' (allowed: red, green, blue)");
    assert!(
        color
            .parse_json(&json!(1))
            .unwrap_err()
            .contains("a string")
    );
}

#[test]
fn etags_follow_the_inputs_and_the_file() {
    let model = load(&linear_file()).unwrap();
    let a = [Input::Number(1.0), Input::Category(2)];
    let b = [Input::Number(2.0), Input::Category(2)];
    assert_eq!(model.etag(&a, 't'), model.etag(&a, 't'));
    assert_ne!(model.etag(&a, 't'), model.etag(&b, 't'));
    let mut changed = linear_file();
    changed["model"]["intercept"] = json!(2.0);
    assert_ne!(load(&changed).unwrap().etag(&a, 't'), model.etag(&a, 't'));
    assert_ne!(model.etag(&a, 'j'), model.etag(&a, 't'));
}

#[test]
fn etags_are_quoted_hex_digests_and_the_representation() {
    let model = load(&linear_file()).unwrap();
    let tag = model.etag(&[Input::Number(1.0), Input::Category(2)], 'j');
    let inner = tag.strip_prefix('"').unwrap().strip_suffix("j\"").unwrap();
    assert_eq!(inner.len(), 32, "{tag}");
    assert!(
        inner
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(&inner[..16], format!("{:016x}", model.digest));
}

#[test]
fn the_embedded_sales_model_answers_the_seed_test() {
    let model = Model::embedded().unwrap();
    assert_eq!(model.name, "sales");
    let value = predict(
        &model,
        &[
            ("seller_available", json!(123)),
            ("month", json!("december")),
            ("customer_visiting_website", json!(4)),
        ],
    );
    assert!((2000.0..=5000.0).contains(&value) && value.fract() == 0.0);
    // Far beyond the training data: answered, clamped.
    let huge = predict(
        &model,
        &[
            ("seller_available", json!(1000)),
            ("month", json!("6")),
            ("customer_visiting_website", json!(1_000_000)),
        ],
    );
    assert!((2000.0..=5000.0).contains(&huge));
}

#[test]
fn the_embedded_model_is_walked_complete_as_the_linked_walker_would() {
    use super::eval::{Trees, f32_at_or_below};
    let model = Model::embedded().unwrap();
    let ModelKind::Trees(complete) = &model.kind else {
        panic!("the sales model is a tree ensemble")
    };
    assert!(matches!(complete.trees, Trees::Complete(_)));
    // The same trees, linked: 64-bit comparisons keep them so; then
    // compared in f32 again, as before the complete layout.
    let mut file: Value = serde_json::from_slice(EMBEDDED_SALES_MODEL).unwrap();
    file["model"]["feature_precision"] = json!("float64");
    let ModelKind::Trees(linked) = load(&file).unwrap().kind else {
        unreachable!()
    };
    let Trees::Linked(trees) = &linked.trees else {
        panic!("64-bit comparisons keep the trees linked")
    };
    let splits: Vec<(usize, f64)> = trees
        .nodes
        .iter()
        .filter(|node| node.left != eval::LEAF)
        .map(|node| (node.feature as usize, node.threshold_or_value))
        .collect();
    let linked = eval::TreeEnsemble {
        float32: true,
        ..linked
    };
    let mut rng = fastrand::Rng::with_seed(11);
    let mut row = vec![0.0; model.width()];
    let mut random_row = |row: &mut [f64]| {
        let inputs = [
            Input::Number(f64::from(rng.u32(0..=60))),
            Input::Category(rng.usize(..12)),
            Input::Number(f64::from(rng.u32(0..=20_000))),
        ];
        model.encode(&inputs, row);
    };
    let mut compared = 0;
    let mut compare = |row: &[f64]| {
        assert_eq!(
            complete.value(row).to_bits(),
            linked.value(row).to_bits(),
            "{row:?}"
        );
        compared += 1;
    };
    for _ in 0..10_000 {
        random_row(&mut row);
        compare(&row);
    }
    // Every split, with its input on and either side of the threshold.
    for (feature, threshold) in splits {
        random_row(&mut row);
        let at = f32_at_or_below(threshold);
        for x in [at.next_down(), at, at.next_up(), at.next_up().next_up()] {
            row[feature] = f64::from(x);
            compare(&row);
        }
    }
    assert!(compared > 10_000 + 4 * 2000, "{compared}");
}

#[test]
fn the_placeholder_is_random_within_the_seed_range() {
    let model = Model::random().unwrap();
    assert!(!model.is_deterministic());
    let row = vec![0.0; model.width()];
    for _ in 0..1000 {
        let value = model.predict(&row);
        assert!((2000.0..=5000.0).contains(&value) && value.fract() == 0.0);
    }
}

// --- one test per loader rule ----------------------------------------------

#[test]
fn rule_the_file_is_json_in_this_layout() {
    assert!(Model::from_json(b"{nope").is_err());
    let top = refused(linear_file(), |f| f["extra"] = json!(1));
    assert!(top.contains("unknown field `extra`"), "{top}");
    let feature = refused(linear_file(), |f| f["features"][0]["maximum"] = json!(1));
    assert!(feature.contains("unknown field `maximum`"), "{feature}");
    let tree = refused(trees_file(), |f| {
        f["model"]["trees"][0]["weights"] = json!([])
    });
    assert!(tree.contains("unknown field `weights`"), "{tree}");
    let kind = refused(linear_file(), |f| f["model"]["kind"] = json!("svm"));
    assert!(kind.contains("unknown variant `svm`"), "{kind}");
    let missing = refused(linear_file(), |f| {
        f.as_object_mut().unwrap().remove("features");
    });
    assert!(missing.contains("missing field `features`"), "{missing}");
}

#[test]
fn rule_format_name_and_version() {
    let format = refused(linear_file(), |f| f["format"] = json!("wren-model/2"));
    assert!(format.starts_with("format:"), "{format}");
    let name = refused(linear_file(), |f| f["name"] = json!("a b"));
    assert!(name.starts_with("name:"), "{name}");
    let version = refused(linear_file(), |f| f["version"] = json!("1\"0"));
    assert!(version.starts_with("version:"), "{version}");
    let empty = refused(linear_file(), |f| f["version"] = json!(""));
    assert!(empty.starts_with("version:"), "{empty}");
}

#[test]
fn rule_feature_count_and_names() {
    let none = refused(linear_file(), |f| f["features"] = json!([]));
    assert!(none.contains("1 to 256 features"), "{none}");
    let twice = refused(linear_file(), |f| f["features"][1]["name"] = json!("x"));
    assert!(
        twice.starts_with("features[1].name: \"x\" is used twice"),
        "{twice}"
    );
    let bad = refused(linear_file(), |f| f["features"][0]["name"] = json!("x/y"));
    assert!(bad.starts_with("features[0].name:"), "{bad}");
}

#[test]
fn rule_numeric_bounds() {
    let integer = refused(linear_file(), |f| f["features"][0]["min"] = json!(101));
    assert!(
        integer.starts_with("features[0]: min 101 is above max 100"),
        "{integer}"
    );
    let exact = refused(linear_file(), |f| {
        f["features"][0]["max"] = json!(1i64 << 54)
    });
    assert!(exact.contains("2^53"), "{exact}");
    let number = refused(linear_file(), |f| f["features"][1]["max"] = json!(-2.0));
    assert!(
        number.starts_with("features[1]: min -1.5 is above max -2"),
        "{number}"
    );
}

#[test]
fn rule_categories() {
    let empty = refused(linear_file(), |f| f["features"][2]["values"] = json!([]));
    assert!(
        empty.starts_with("features[2].values: a category has 1 to"),
        "{empty}"
    );
    let repeated = refused(linear_file(), |f| {
        f["features"][2]["values"] = json!(["red", "Red"])
    });
    assert!(repeated.starts_with("features[2].values[1]:"), "{repeated}");
    let unknown = refused(linear_file(), |f| {
        f["features"][2]["aliases"] = json!({"p": "purple"})
    });
    assert!(unknown.starts_with("features[2].aliases.p:"), "{unknown}");
    let clash = refused(linear_file(), |f| {
        f["features"][2]["aliases"] = json!({"GREEN": "red"})
    });
    assert!(clash.contains("clashes"), "{clash}");
    let not_text = refused(linear_file(), |f| {
        f["features"][2]["aliases"] = json!({"r": 0})
    });
    assert!(not_text.contains("must name a value"), "{not_text}");
    let encoding = refused(linear_file(), |f| {
        f["features"][2]["encoding"] = json!("binary")
    });
    assert!(encoding.contains("unknown variant `binary`"), "{encoding}");
}

#[test]
fn rule_numbers_are_finite() {
    let text = linear_file()
        .to_string()
        .replace("\"intercept\":1.0", "\"intercept\":1e999");
    assert!(text.contains("1e999"));
    let err = Model::from_json(text.as_bytes()).unwrap_err();
    assert!(err.contains("number out of range"), "{err}");
}

#[test]
fn rule_linear_coefficients_match_the_encoding() {
    let err = refused(linear_file(), |f| {
        f["model"]["coefficients"] = json!([1.0, 2.0])
    });
    assert_eq!(
        err,
        "model.coefficients: the features encode to 6 positions, found 2 coefficients"
    );
}

#[test]
fn rule_tree_and_node_counts() {
    let none = refused(trees_file(), |f| f["model"]["trees"] = json!([]));
    assert!(none.contains("1 to 10000 trees"), "{none}");
    let empty = refused(
        trees_file(),
        |f| {
            f["model"]["trees"][1] =
                json!({"feature": [], "threshold": [], "left": [], "right": [], "value": []})
        },
    );
    assert!(
        empty.starts_with("model.trees[1]: a tree has 1 to"),
        "{empty}"
    );
    let lengths = refused(trees_file(), |f| {
        f["model"]["trees"][0]["threshold"] = json!([2.5])
    });
    assert!(lengths.contains("one length"), "{lengths}");
}

#[test]
fn rule_children_come_after_their_parent() {
    // A cycle needs a child at or before its parent.
    let cycle = refused(trees_file(), |f| {
        f["model"]["trees"][0]["left"][0] = json!(0)
    });
    assert!(
        cycle.starts_with("model.trees[0]: node 0 points at node 0"),
        "{cycle}"
    );
    let outside = refused(trees_file(), |f| {
        f["model"]["trees"][0]["right"][0] = json!(3)
    });
    assert!(outside.contains("points at node 3"), "{outside}");
}

#[test]
fn rule_leaves_and_splits_are_whole() {
    let one_child = refused(trees_file(), |f| {
        f["model"]["trees"][0]["right"][0] = json!(-1)
    });
    assert!(one_child.contains("node 0 has one child"), "{one_child}");
    let shared = refused(trees_file(), |f| {
        f["model"]["trees"][0] = json!({
            "feature": [0, 0, -2], "threshold": [1.0, 2.0, 0.0],
            "left": [1, 2, -1], "right": [2, 2, -1], "value": [0.0, 0.0, 1.0]
        })
    });
    assert!(
        shared.contains("node 2 is the child of two splits"),
        "{shared}"
    );
}

#[test]
fn rule_splits_use_encoded_positions() {
    let err = refused(trees_file(), |f| {
        f["model"]["trees"][1]["feature"][0] = json!(2)
    });
    assert!(
        err.starts_with("model.trees[1]: node 0 splits on position 2"),
        "{err}"
    );
    let negative = refused(trees_file(), |f| {
        f["model"]["trees"][1]["feature"][0] = json!(-2)
    });
    assert!(negative.contains("position -2"), "{negative}");
}

#[test]
fn rule_clamp_bounds() {
    let err = refused(trees_file(), |f| {
        f["output"]["clamp"] = json!({"min": 5.0, "max": 1.0})
    });
    assert_eq!(err, "output.clamp: min 5 is above max 1");
}

#[test]
fn rule_an_alias_may_repeat_its_own_value() {
    let mut file = linear_file();
    file["features"][2]["aliases"] = json!({"Red": "red", "g": "green"});
    let model = load(&file).unwrap();
    let (_, color) = model.feature("color").unwrap();
    assert_eq!(color.parse_text("RED"), Ok(Input::Category(0)));
    assert_eq!(color.parse_text("g"), Ok(Input::Category(1)));
    let clash = refused(linear_file(), |f| {
        f["features"][2]["aliases"] = json!({"Red": "green"})
    });
    assert!(clash.contains("clashes"), "{clash}");
}

#[test]
fn wide_models_predict_from_inputs_too() {
    // 70 one-hot positions: wider than the stack buffer.
    let values: Vec<String> = (0..70).map(|i| format!("v{i}")).collect();
    let coefficients: Vec<f64> = (0..70).map(f64::from).collect();
    let file = json!({
        "format": "wren-model/1", "name": "wide", "version": "1",
        "features": [{"type": "category", "name": "c", "encoding": "one_hot", "values": values}],
        "model": {"kind": "linear", "intercept": 0.5, "coefficients": coefficients}
    });
    let model = load(&file).unwrap();
    let (_, feature) = model.feature("c").unwrap();
    let input = feature.parse_text("V69").unwrap();
    assert_eq!(model.predict_inputs(&[input]), 69.5);
    let narrow = load(&linear_file()).unwrap();
    let inputs: Vec<Input> = [("x", "3"), ("t", "0.5"), ("color", "green"), ("size", "l")]
        .iter()
        .map(|(name, text)| narrow.feature(name).unwrap().1.parse_text(text).unwrap())
        .collect();
    assert_eq!(
        narrow.predict_inputs(&inputs),
        1.0 + 6.0 + 5.0 + 200.0 + 2000.0
    );
}
