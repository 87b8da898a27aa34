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
    pub trees: Trees,
    pub aggregate: Aggregate,
    pub base_score: f64,
    pub learning_rate: f64,
    /// Round inputs to `f32` before comparing, as scikit-learn's trees do.
    pub float32: bool,
}

/// How the trees are held in memory, chosen once by [`TreeEnsemble::new`].
#[derive(Debug, Clone, PartialEq)]
pub enum Trees {
    /// Any depth, any precision.
    Linked(Linked),
    /// Shallow, mostly full trees over `f32` inputs, as scikit-learn's
    /// boosted trees are: the same values, over twice as fast.
    Complete(Complete),
}

/// Trees as the file has them: one flat array of linked nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Linked {
    pub nodes: Vec<Node>,
    /// Index of each tree's root in `nodes`.
    pub roots: Vec<u32>,
}

/// The deepest trees laid out complete: each level a leaf sits above this
/// doubles the memory its padding takes.
const COMPLETE_MAX_DEPTH: u32 = 8;

/// The most slots (splits and leaves) of the complete layout per node of
/// the file. Sparse trees pay for their padding in steps: 100 random
/// trees of depth 5 to 8 walked faster complete up to about 6 slots a
/// node, slower from about 7. Boosted trees are near full (the sales
/// model: 1.04).
const MAX_SLOTS_PER_NODE: usize = 4;

/// Every tree as a complete binary tree of one depth `D`, in heap order:
/// split `i` (1 to 2^D - 1) has children `2i` and `2i + 1`, so a row
/// reaches its leaf in exactly `D` steps of `i = 2i + (x > t)`, with no
/// node links to load and no branch on the data. Several trees are walked
/// side by side, their steps independent, for the CPU to overlap.
///
/// A leaf of the file above depth `D` becomes the same value in every
/// leaf under its slot; the padding splits below it may go either way.
#[derive(Debug, Clone, PartialEq)]
pub struct Complete {
    depth: u32,
    /// 2^D per tree; slot 0 is unused.
    splits: Vec<Split>,
    /// 2^D per tree, left to right.
    leaves: Vec<f64>,
}

/// A split in 8 bytes, both halves loaded from one address.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Split {
    /// The largest `f32` at or below the file's `f64` threshold, which
    /// sends every `f32` input the same way ([`f32_at_or_below`]).
    threshold: f32,
    feature: u8,
}

/// A padding split: every row goes left, though either way would do.
const PADDING: Split = Split {
    threshold: f32::INFINITY,
    feature: 0,
};

/// Trees walked side by side by [`Complete::total`].
const LANES: usize = 4;

impl TreeEnsemble {
    /// Lays the trees out complete when the inputs are compared as `f32`
    /// and [`Complete::depth_for`] finds it worth it; else keeps them
    /// linked.
    pub fn new(
        linked: Linked,
        aggregate: Aggregate,
        base_score: f64,
        learning_rate: f64,
        float32: bool,
    ) -> TreeEnsemble {
        let depth = if float32 {
            Complete::depth_for(&linked)
        } else {
            None
        };
        let trees = match depth {
            Some(depth) => Trees::Complete(Complete::of(&linked, depth)),
            None => Trees::Linked(linked),
        };
        TreeEnsemble {
            trees,
            aggregate,
            base_score,
            learning_rate,
            float32,
        }
    }

    /// Rounds the row as the linked walker compares it (to `f32` when
    /// `float32`), once per row rather than at every node. The complete
    /// layout reads the row as `f32` itself.
    pub fn prepare(&self, row: &mut [f64]) {
        if self.float32 && matches!(self.trees, Trees::Linked(_)) {
            for x in row {
                *x = f64::from(*x as f32);
            }
        }
    }

    /// The ensemble's value for a row given to [`TreeEnsemble::prepare`].
    pub fn value(&self, row: &[f64]) -> f64 {
        let (total, count) = match &self.trees {
            Trees::Linked(linked) => (linked.total(row), linked.roots.len()),
            Trees::Complete(complete) => (complete.total(row), complete.count()),
        };
        let aggregated = match self.aggregate {
            Aggregate::Sum => total,
            Aggregate::Mean => total / count as f64,
        };
        self.base_score + self.learning_rate * aggregated
    }
}

impl Linked {
    /// The sum of the trees' leaves for `row`, in tree order.
    fn total(&self, row: &[f64]) -> f64 {
        self.roots.iter().map(|&root| self.tree(root, row)).sum()
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

    /// The depth of the tree at `root` (a lone leaf is 0), or `None` when
    /// it is deeper than `max`.
    fn depth(&self, root: u32, max: u32) -> Option<u32> {
        let mut deepest = 0;
        let mut pending = vec![(root, 0)];
        while let Some((at, depth)) = pending.pop() {
            let node = &self.nodes[at as usize];
            deepest = deepest.max(depth);
            if node.left != LEAF {
                if depth == max {
                    return None;
                }
                pending.push((node.left, depth + 1));
                pending.push((node.right, depth + 1));
            }
        }
        Some(deepest)
    }
}

impl Complete {
    /// The depth to lay `linked` out complete at, unless a tree is deeper
    /// than [`COMPLETE_MAX_DEPTH`], a split's position is above 255, or
    /// the layout would take more than [`MAX_SLOTS_PER_NODE`] slots per
    /// node.
    fn depth_for(linked: &Linked) -> Option<u32> {
        let mut depth = 0;
        for &root in &linked.roots {
            depth = depth.max(linked.depth(root, COMPLETE_MAX_DEPTH)?);
        }
        let narrow = linked
            .nodes
            .iter()
            .all(|n| n.left == LEAF || n.feature <= 255);
        let slots = linked.roots.len() << (depth + 1);
        (narrow && slots <= MAX_SLOTS_PER_NODE * linked.nodes.len()).then_some(depth)
    }

    /// `linked` laid out complete at `depth`, which no tree exceeds; every
    /// split's position is below 256.
    fn of(linked: &Linked, depth: u32) -> Complete {
        let slots = 1 << depth;
        let trees = linked.roots.len();
        let mut complete = Complete {
            depth,
            splits: vec![PADDING; trees * slots],
            leaves: vec![0.0; trees * slots],
        };
        for (t, &root) in linked.roots.iter().enumerate() {
            complete.place(linked, root, t * slots, 1, 0);
        }
        complete
    }

    /// Puts `node` and its subtree at slot `slot` (on level `level`) of
    /// the tree whose slots start at `base`.
    fn place(&mut self, linked: &Linked, node: u32, base: usize, slot: usize, level: u32) {
        let node = &linked.nodes[node as usize];
        if node.left == LEAF {
            // The leaves under `slot`, `depth - level` levels down.
            let below = self.depth - level;
            let first = base + (slot << below) - (1 << self.depth);
            self.leaves[first..first + (1 << below)].fill(node.threshold_or_value);
            return;
        }
        self.splits[base + slot] = Split {
            threshold: f32_at_or_below(node.threshold_or_value),
            feature: node.feature as u8,
        };
        self.place(linked, node.left, base, 2 * slot, level + 1);
        self.place(linked, node.right, base, 2 * slot + 1, level + 1);
    }

    fn count(&self) -> usize {
        self.leaves.len() >> self.depth
    }

    /// The sum of the trees' leaves for `row`, in tree order. The depth
    /// becomes a constant, so that the steps unroll and the slot indices
    /// need no bounds checks.
    fn total(&self, row: &[f64]) -> f64 {
        match self.depth {
            0 => self.total_of::<1>(row),
            1 => self.total_of::<2>(row),
            2 => self.total_of::<4>(row),
            3 => self.total_of::<8>(row),
            4 => self.total_of::<16>(row),
            5 => self.total_of::<32>(row),
            6 => self.total_of::<64>(row),
            7 => self.total_of::<128>(row),
            8 => self.total_of::<256>(row),
            _ => unreachable!("depth_for keeps trees at most {COMPLETE_MAX_DEPTH} deep"),
        }
    }

    /// [`Complete::total`] for trees of `SLOTS` = 2^depth slots.
    fn total_of<const SLOTS: usize>(&self, row: &[f64]) -> f64 {
        // The row is f32-exact (prepared), so converting it is exact. A
        // position (a u8) always indexes this array; none past it is split
        // on.
        let mut x = [0.0f32; 256];
        for (x, &r) in x.iter_mut().zip(row) {
            *x = r as f32;
        }
        let (splits, splits_rest) = self.splits.as_chunks::<SLOTS>().0.as_chunks::<LANES>();
        let (leaves, leaves_rest) = self.leaves.as_chunks::<SLOTS>().0.as_chunks::<LANES>();
        // -0.0, as `Iterator::sum` starts: the same sign for a zero sum.
        let mut total = -0.0;
        for (s, l) in splits.iter().zip(leaves) {
            walk(&x, s, l, &mut total);
        }
        for (s, l) in splits_rest.iter().zip(leaves_rest) {
            walk(
                &x,
                std::array::from_ref(s),
                std::array::from_ref(l),
                &mut total,
            );
        }
        total
    }
}

/// Walks `N` trees of `SLOTS` slots side by side and adds their leaves to
/// `total`, in order.
#[inline(always)]
fn walk<const SLOTS: usize, const N: usize>(
    x: &[f32; 256],
    splits: &[[Split; SLOTS]; N],
    leaves: &[[f64; SLOTS]; N],
    total: &mut f64,
) {
    // The directions taken so far, a bit each, the first the highest: on
    // level `level` a tree is at split 2^level + path, and after the last
    // at leaf `path`. (Kept apart, 2^level becomes part of the address;
    // from a slot starting at 1, the compiler re-shifts every bit at
    // every level.) The masks change nothing but spare bounds checks.
    let mut path = [0usize; N];
    for level in 0..SLOTS.trailing_zeros() {
        for k in 0..N {
            let split = splits[k][((1 << level) | path[k]) & (SLOTS - 1)];
            // Right unless x <= t, as the linked walker (and scikit-learn)
            // decides: the same for every row, even one holding NaN.
            #[expect(clippy::neg_cmp_op_on_partial_ord, reason = "NaN goes right")]
            let right = !(x[usize::from(split.feature)] <= split.threshold);
            path[k] = (path[k] << 1) | usize::from(right);
        }
    }
    for k in 0..N {
        *total += leaves[k][path[k] & (SLOTS - 1)];
    }
}

/// The largest `f32` at or below `t` (-inf below the `f32` range). For an
/// `f32` x, `x <= t` exactly when `x <= f32_at_or_below(t)`: x is one of
/// the `f32`s at or below t, of which this is the largest. NaN stays NaN.
pub(super) fn f32_at_or_below(t: f64) -> f32 {
    // Rounds to nearest, so at most one step too high; beyond the range
    // it gives ±inf, and +inf steps down to f32::MAX.
    let rounded = t as f32;
    if f64::from(rounded) > t {
        rounded.next_down()
    } else {
        rounded
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

    /// `model`'s trees laid out complete, inputs compared as `f32`,
    /// however much padding that takes.
    fn complete(model: &TreeEnsemble) -> TreeEnsemble {
        let Trees::Linked(linked) = &model.trees else {
            panic!("expected linked trees")
        };
        let depth = linked
            .roots
            .iter()
            .map(|&root| linked.depth(root, COMPLETE_MAX_DEPTH).unwrap())
            .max()
            .unwrap();
        TreeEnsemble {
            trees: Trees::Complete(Complete::of(linked, depth)),
            float32: true,
            ..model.clone()
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
            trees: Trees::Linked(Linked {
                nodes: vec![
                    split(0, 2.5, 1, 2),
                    leaf(-4.0),
                    leaf(6.0),
                    split(1, 0.1, 4, 5),
                    leaf(1.0),
                    leaf(3.0),
                ],
                roots: vec![0, 3],
            }),
            aggregate: Aggregate::Sum,
            base_score: 10.0,
            learning_rate: 0.5,
            float32: false,
        }
    }

    #[test]
    fn boosted_trees_add_up() {
        for model in [boosted(), complete(&boosted())] {
            assert_eq!(model.value(&[2.5, 0.0]), 10.0 + 0.5 * (-4.0 + 1.0));
            assert_eq!(model.value(&[2.75, 0.0]), 10.0 + 0.5 * (6.0 + 1.0));
            assert_eq!(model.value(&[0.0, 7.0]), 10.0 + 0.5 * (-4.0 + 3.0));
        }
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
            trees: Trees::Linked(Linked { nodes, roots }),
            aggregate: Aggregate::Sum,
            base_score: 0.0,
            learning_rate: 1.0,
            float32: false,
        };
        // Nine trees: two groups walked side by side and one more.
        for model in [complete(&model), model] {
            assert_eq!(model.value(&[4.0, 1.0]), expected);
        }
    }

    #[test]
    fn forests_average() {
        let model = TreeEnsemble {
            aggregate: Aggregate::Mean,
            base_score: 0.0,
            learning_rate: 1.0,
            ..boosted()
        };
        for model in [complete(&model), model] {
            assert_eq!(model.value(&[3.0, 1.0]), (6.0 + 3.0) / 2.0);
        }
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
        assert_eq!(complete(&model).value(&row), 10.0 + 0.5 * (-4.0 + 3.0));
    }

    /// A tree of `depth` levels of splits on `feature`, all leaves that
    /// deep: node `at` and its subtree, pushed onto `nodes`.
    fn full(nodes: &mut Vec<Node>, depth: u32, feature: u32) -> u32 {
        let at = nodes.len() as u32;
        if depth == 0 {
            nodes.push(leaf(f64::from(at)));
            return at;
        }
        nodes.push(split(feature, f64::from(at), 0, 0));
        let left = full(nodes, depth - 1, feature);
        let right = full(nodes, depth - 1, feature);
        (nodes[at as usize].left, nodes[at as usize].right) = (left, right);
        at
    }

    /// A chain of `depth` splits on `feature`, each with a leaf on its left.
    fn chain(depth: u32, feature: u32) -> Vec<Node> {
        let mut nodes = Vec::new();
        for level in 0..depth {
            let at = 2 * level;
            nodes.push(split(feature, f64::from(level), at + 1, at + 2));
            nodes.push(leaf(f64::from(level)));
        }
        nodes.push(leaf(-1.0));
        nodes
    }

    #[test]
    fn the_layout_is_chosen_once_at_load() {
        let laid_out = |nodes: Vec<Node>, float32| {
            let model = TreeEnsemble::new(
                Linked {
                    nodes,
                    roots: vec![0],
                },
                Aggregate::Sum,
                0.0,
                1.0,
                float32,
            );
            matches!(model.trees, Trees::Complete(_))
        };
        let full = |depth, feature| {
            let mut nodes = Vec::new();
            full(&mut nodes, depth, feature);
            nodes
        };
        assert!(laid_out(chain(0, 0), true));
        assert!(laid_out(chain(2, 0), true));
        assert!(laid_out(full(COMPLETE_MAX_DEPTH, 255), true));
        // Too deep; a position a byte cannot hold; 64-bit comparisons.
        assert!(!laid_out(full(COMPLETE_MAX_DEPTH + 1, 0), true));
        assert!(!laid_out(full(2, 256), true));
        assert!(!laid_out(full(2, 0), false));
        // 2^9 slots for 17 nodes: padded, it would take more steps.
        assert!(!laid_out(chain(COMPLETE_MAX_DEPTH, 0), true));
    }

    #[test]
    fn the_deepest_trees_pad_and_add_up() {
        let model = TreeEnsemble {
            trees: Trees::Linked(Linked {
                nodes: chain(COMPLETE_MAX_DEPTH, 3),
                roots: vec![0],
            }),
            aggregate: Aggregate::Sum,
            base_score: 0.0,
            learning_rate: 1.0,
            float32: true,
        };
        let padded = complete(&model);
        let mut row = [0.0; 4];
        for (x, expected) in [(0.0, 0.0), (0.5, 1.0), (7.0, 7.0), (7.5, -1.0)] {
            row[3] = x;
            assert_eq!(model.value(&row), expected, "x = {x}");
            assert_eq!(padded.value(&row), expected, "x = {x}");
        }
        let mut nodes = Vec::new();
        full(&mut nodes, COMPLETE_MAX_DEPTH, 1);
        let model = TreeEnsemble {
            trees: Trees::Linked(Linked {
                nodes,
                roots: vec![0],
            }),
            ..model
        };
        let padded = complete(&model);
        for x in 0..600 {
            let row = [0.0, f64::from(x) - 0.5];
            assert_eq!(model.value(&row), padded.value(&row), "x = {x}");
        }
    }

    #[test]
    fn shallow_leaves_are_padded_to_the_deepest_tree() {
        let nodes = vec![
            // A lone leaf.
            leaf(5.0),
            // A stump.
            split(0, 1.0, 2, 3),
            leaf(1.0),
            leaf(2.0),
            // Three deep on the right: x1 <= 0, then x2 <= 0, then x0 <= 0.
            split(1, 0.0, 5, 6),
            leaf(10.0),
            split(2, 0.0, 7, 8),
            leaf(20.0),
            split(0, 0.0, 9, 10),
            leaf(30.0),
            leaf(40.0),
        ];
        let linked = TreeEnsemble {
            trees: Trees::Linked(Linked {
                nodes,
                roots: vec![0, 1, 4],
            }),
            aggregate: Aggregate::Sum,
            base_score: 0.0,
            learning_rate: 1.0,
            float32: true,
        };
        let model = complete(&linked);
        let Trees::Complete(complete) = &model.trees else {
            unreachable!()
        };
        assert_eq!(complete.depth, 3);
        assert_eq!(complete.count(), 3);
        let at = |feature, threshold| Split { feature, threshold };
        let p = PADDING;
        #[rustfmt::skip]
        assert_eq!(complete.splits, [
            p, p, p, p, p, p, p, p,
            p, at(0, 1.0), p, p, p, p, p, p,
            p, at(1, 0.0), p, at(2, 0.0), p, p, p, at(0, 0.0),
        ]);
        #[rustfmt::skip]
        assert_eq!(complete.leaves, [
            5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0,
            1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0,
            10.0, 10.0, 10.0, 10.0, 20.0, 20.0, 30.0, 40.0,
        ]);
        for row in [
            [0.0, 0.0, 0.0],
            [2.0, 1.0, -1.0],
            [1.0, 1.0, 1.0],
            [-1.0, 1.0, 1.0],
        ] {
            assert_eq!(model.value(&row), linked.value(&row), "{row:?}");
        }
        assert_eq!(model.value(&[2.0, 1.0, 1.0]), 5.0 + 2.0 + 40.0);
    }

    #[test]
    fn f32_thresholds_examples() {
        assert_eq!(f32_at_or_below(2.5), 2.5);
        assert_eq!(f32_at_or_below(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(f32_at_or_below(-0.0).to_bits(), (-0.0f32).to_bits());
        // 0.1f32 is above 0.1.
        assert_eq!(f32_at_or_below(0.1), 0.1f32.next_down());
        assert_eq!(f32_at_or_below(-0.1), -0.1f32);
        // Beyond the f32 range, and between zero and the least subnormal.
        assert_eq!(f32_at_or_below(1e39), f32::MAX);
        assert_eq!(f32_at_or_below(f64::MAX), f32::MAX);
        assert_eq!(f32_at_or_below(-1e39), f32::NEG_INFINITY);
        assert_eq!(f32_at_or_below(f64::INFINITY), f32::INFINITY);
        assert_eq!(f32_at_or_below(1e-50), 0.0);
        assert_eq!(f32_at_or_below(-1e-50), -f32::from_bits(1));
        assert!(f32_at_or_below(f64::NAN).is_nan());
        // The midpoint of two f32s, a tie that rounds up to even.
        let (low, high) = (1.0f32.next_up(), 1.0f32.next_up().next_up());
        let midpoint = (f64::from(low) + f64::from(high)) / 2.0;
        assert_eq!(midpoint as f32, high);
        assert_eq!(f32_at_or_below(midpoint), low);
    }

    /// Thresholds of every kind: f32-exact, ties, zeros, beyond the f32
    /// range, subnormal, and plain doubles.
    fn thresholds(rng: &mut fastrand::Rng) -> Vec<f64> {
        let mut ts = vec![
            0.0,
            -0.0,
            0.1,
            -0.1,
            2.5,
            0.5,
            1e-50,
            -1e-50,
            1e-45,
            f64::from(f32::from_bits(1)),
            f64::from(f32::MIN_POSITIVE),
            f64::from(f32::MAX),
            f64::from(f32::MAX) * (1.0 + f64::EPSILON),
            -f64::from(f32::MAX),
            1e39,
            -1e39,
            f64::MAX,
            f64::MIN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        for _ in 0..200 {
            let f = f32::from_bits(rng.u32(..));
            if !f.is_finite() {
                continue;
            }
            let f = f64::from(f);
            let next = f64::from((f as f32).next_up());
            ts.extend([
                f,
                (f + next) / 2.0,
                f64::from_bits(f.to_bits() + 1),
                f64::from_bits(f.to_bits().wrapping_sub(1)),
                rng.f64() * 200.0 - 100.0,
                f64::from_bits(rng.u64(..)),
            ]);
        }
        ts.retain(|t| t.is_finite() || t.is_nan() || rng.bool());
        ts
    }

    #[test]
    fn f32_thresholds_send_every_f32_the_same_way() {
        let mut rng = fastrand::Rng::with_seed(20261122);
        for t in thresholds(&mut rng) {
            let t32 = f32_at_or_below(t);
            if t.is_nan() {
                continue;
            }
            assert!(f64::from(t32) <= t, "{t:e} -> {t32:e}");
            assert!(
                t32 == f32::INFINITY || f64::from(t32.next_up()) > t,
                "{t:e} -> {t32:e}"
            );
            let near = t as f32;
            for x in [
                t32.next_down(),
                t32,
                t32.next_up(),
                near.next_down(),
                near,
                near.next_up(),
                0.0,
                -0.0,
                f32::MAX,
                f32::MIN,
                f32::INFINITY,
                f32::NEG_INFINITY,
            ] {
                assert_eq!(f64::from(x) <= t, x <= t32, "x {x:e}, t {t:e}");
            }
        }
    }

    /// A random tree under `nodes`, at most `depth` deep, its root last
    /// pushed first; children come after their parent, as the loader
    /// requires.
    fn random_tree(
        rng: &mut fastrand::Rng,
        nodes: &mut Vec<Node>,
        depth: u32,
        width: u32,
        thresholds: &[f64],
    ) -> u32 {
        let at = nodes.len() as u32;
        if depth == 0 || rng.u32(..4) == 0 {
            // Leaves of either sign, zeros among them.
            let value = match rng.u32(..8) {
                0 => 0.0,
                1 => -0.0,
                _ => rng.f64() * 1000.0 - 500.0,
            };
            nodes.push(leaf(value));
            return at;
        }
        let feature = rng.u32(..width);
        let threshold = thresholds[rng.usize(..thresholds.len())];
        nodes.push(split(feature, threshold, 0, 0));
        let left = random_tree(rng, nodes, depth - 1, width, thresholds);
        let right = random_tree(rng, nodes, depth - 1, width, thresholds);
        (nodes[at as usize].left, nodes[at as usize].right) = (left, right);
        at
    }

    #[test]
    fn the_complete_layout_answers_what_the_linked_walker_does() {
        let mut rng = fastrand::Rng::with_seed(7);
        let thresholds = thresholds(&mut rng);
        for round in 0..300 {
            let width = rng.u32(1..=20);
            let depth = rng.u32(..=COMPLETE_MAX_DEPTH);
            let mut linked = Linked {
                nodes: Vec::new(),
                roots: Vec::new(),
            };
            for _ in 0..rng.u32(1..=13) {
                let root = random_tree(&mut rng, &mut linked.nodes, depth, width, &thresholds);
                linked.roots.push(root);
            }
            let aggregate = if rng.bool() {
                Aggregate::Sum
            } else {
                Aggregate::Mean
            };
            let model = TreeEnsemble {
                trees: Trees::Linked(linked),
                aggregate,
                base_score: 0.0,
                learning_rate: 1.0,
                float32: true,
            };
            let complete = complete(&model);
            let (Trees::Linked(linked_trees), Trees::Complete(complete_trees)) =
                (&model.trees, &complete.trees)
            else {
                unreachable!()
            };
            for _ in 0..50 {
                // Inputs on, beside and far from the thresholds.
                let mut row: Vec<f64> = (0..width)
                    .map(|_| {
                        let t = thresholds[rng.usize(..thresholds.len())];
                        match rng.u32(..6) {
                            0 => t,
                            1 => f64::from((t as f32).next_up()),
                            2 => f64::from((t as f32).next_down()),
                            3 => f64::from(f32_at_or_below(t)),
                            4 => rng.f64() * 20.0 - 10.0,
                            _ => {
                                [0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, 1e300][rng.usize(..5)]
                            }
                        }
                    })
                    .collect();
                model.prepare(&mut row);
                // Bit for bit, the sign of a zero sum included.
                assert_eq!(
                    linked_trees.total(&row).to_bits(),
                    complete_trees.total(&row).to_bits(),
                    "round {round}, row {row:?}"
                );
                assert_eq!(
                    model.value(&row).to_bits(),
                    complete.value(&row).to_bits(),
                    "round {round}, row {row:?}"
                );
            }
        }
    }
}
