//! The evaluators: a model's value for one encoded row. Pure and
//! allocation-free; the loader has checked every index they follow.

/// `intercept + Σ coefficients[i] · row[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub intercept: f64,
    pub coefficients: Vec<f64>,
}

impl Linear {
    pub fn value(&self, row: &[f64]) -> f64 {
        self.intercept
            + self
                .coefficients
                .iter()
                .zip(row)
                .map(|(c, x)| c * x)
                .sum::<f64>()
    }
}

/// A node of a tree, in one flat array for all trees: splits point at
/// their children by absolute index; a leaf has `left == LEAF`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Node {
    pub feature: u32,
    pub left: u32,
    pub right: u32,
    /// The split threshold, or the leaf's value.
    pub threshold_or_value: f64,
}

pub const LEAF: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    Mean,
}

/// `base_score + learning_rate · aggregate(trees)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeEnsemble {
    pub nodes: Vec<Node>,
    /// Index of each tree's root in `nodes`.
    pub roots: Vec<u32>,
    pub aggregate: Aggregate,
    pub base_score: f64,
    pub learning_rate: f64,
    /// Round inputs to `f32` before comparing, as scikit-learn's trees do.
    pub float32: bool,
}

impl TreeEnsemble {
    /// Rounds the row as the trees compare it (to `f32` when `float32`),
    /// once per row rather than at every node.
    pub fn prepare(&self, row: &mut [f64]) {
        if self.float32 {
            for x in row {
                *x = f64::from(*x as f32);
            }
        }
    }

    /// The ensemble's value for a row given to [`TreeEnsemble::prepare`].
    pub fn value(&self, row: &[f64]) -> f64 {
        let total: f64 = self.roots.iter().map(|&root| self.tree(root, row)).sum();
        let aggregated = match self.aggregate {
            Aggregate::Sum => total,
            Aggregate::Mean => total / self.roots.len() as f64,
        };
        self.base_score + self.learning_rate * aggregated
    }

    fn tree(&self, root: u32, row: &[f64]) -> f64 {
        let mut node = &self.nodes[root as usize];
        while node.left != LEAF {
            let x = row[node.feature as usize];
            // Which way a row goes is data, not a pattern a branch predictor
            // can learn: a select is ~2x faster on varied rows.
            let next = std::hint::select_unpredictable(
                x <= node.threshold_or_value,
                node.left,
                node.right,
            );
            node = &self.nodes[next as usize];
        }
        node.threshold_or_value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(feature: u32, threshold: f64, left: u32, right: u32) -> Node {
        Node {
            feature,
            left,
            right,
            threshold_or_value: threshold,
        }
    }

    fn leaf(value: f64) -> Node {
        Node {
            feature: 0,
            left: LEAF,
            right: LEAF,
            threshold_or_value: value,
        }
    }

    #[test]
    fn linear_models() {
        let model = Linear {
            intercept: 1.5,
            coefficients: vec![2.0, -1.0, 0.5],
        };
        assert_eq!(model.value(&[1.0, 2.0, 4.0]), 1.5 + 2.0 - 2.0 + 2.0);
        assert_eq!(model.value(&[0.0, 0.0, 0.0]), 1.5);
    }

    /// Two stumps on x0 and x1, boosted: 10 + 0.5 · (tree0 + tree1).
    fn boosted() -> TreeEnsemble {
        TreeEnsemble {
            nodes: vec![
                split(0, 2.5, 1, 2),
                leaf(-4.0),
                leaf(6.0),
                split(1, 0.1, 4, 5),
                leaf(1.0),
                leaf(3.0),
            ],
            roots: vec![0, 3],
            aggregate: Aggregate::Sum,
            base_score: 10.0,
            learning_rate: 0.5,
            float32: false,
        }
    }

    #[test]
    fn boosted_trees_add_up() {
        let model = boosted();
        assert_eq!(model.value(&[2.5, 0.0]), 10.0 + 0.5 * (-4.0 + 1.0));
        assert_eq!(model.value(&[2.6, 0.0]), 10.0 + 0.5 * (6.0 + 1.0));
        assert_eq!(model.value(&[0.0, 7.0]), 10.0 + 0.5 * (-4.0 + 3.0));
    }

    #[test]
    fn many_trees_of_different_depths_all_count() {
        let mut nodes = Vec::new();
        let mut roots = Vec::new();
        let mut expected = 0.0;
        for t in 0..9u32 {
            let root = nodes.len() as u32;
            roots.push(root);
            if t % 3 == 0 {
                nodes.push(leaf(f64::from(t)));
                expected += f64::from(t);
            } else {
                // x0 <= t goes left to a split on x1, else right to a leaf.
                nodes.push(split(0, f64::from(t), root + 1, root + 2));
                nodes.push(split(1, 0.5, root + 3, root + 4));
                nodes.push(leaf(100.0));
                nodes.push(leaf(-1.0));
                nodes.push(leaf(10.0 * f64::from(t)));
                expected += if 4.0 <= f64::from(t) {
                    10.0 * f64::from(t)
                } else {
                    100.0
                };
            }
        }
        let model = TreeEnsemble {
            nodes,
            roots,
            aggregate: Aggregate::Sum,
            base_score: 0.0,
            learning_rate: 1.0,
            float32: false,
        };
        assert_eq!(model.value(&[4.0, 1.0]), expected);
    }

    #[test]
    fn forests_average() {
        let model = TreeEnsemble {
            aggregate: Aggregate::Mean,
            base_score: 0.0,
            learning_rate: 1.0,
            ..boosted()
        };
        assert_eq!(model.value(&[3.0, 1.0]), (6.0 + 3.0) / 2.0);
    }

    #[test]
    fn float32_comparison_follows_scikit_learn() {
        // 0.1 as f64 is a little below 0.1f32: in 64 bits 0.1 <= 0.1 goes
        // left; rounded to f32 it is above the f64 threshold and goes right.
        let mut model = boosted();
        let mut row = [0.0, 0.1];
        model.prepare(&mut row);
        assert_eq!(model.value(&row), 10.0 + 0.5 * (-4.0 + 1.0));
        model.float32 = true;
        model.prepare(&mut row);
        assert_eq!(model.value(&row), 10.0 + 0.5 * (-4.0 + 3.0));
    }
}
