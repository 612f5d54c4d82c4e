//! The dependency graph of a pipeline: a model depends on the models whose
//! outputs its query reads. Models run in a topological order (ties broken by
//! name, so the order is stable); a cycle is an error naming every model on it.
//!
//! Selection follows dbt: `model` alone, `model+` with everything downstream of it,
//! `+model` with everything upstream, `+model+` both. Models outside the selection
//! are read as published.

use std::collections::{BTreeMap, BTreeSet};

use crate::spec::{Pipeline, SpecError};

/// Models in run order, each with the models it reads.
#[derive(Clone, Debug)]
pub struct Graph {
    /// Indexes into `Pipeline::models`, in run order.
    pub order: Vec<usize>,
    /// For each model (by index), the indexes of the models it reads.
    pub upstream: Vec<BTreeSet<usize>>,
}

impl Graph {
    pub fn of(pipeline: &Pipeline) -> Result<Self, SpecError> {
        // A model's output, and the boundary table of an incremental model, are
        // provided by that model.
        let index: BTreeMap<String, usize> = pipeline
            .models
            .iter()
            .enumerate()
            .flat_map(|(i, m)| {
                let companion = m.incremental_input.as_ref().map(|_| {
                    (
                        icefjord_catalog::display(&crate::boundary::companion(&m.ident)),
                        i,
                    )
                });
                // `input@since:<model>` reads past the model's boundary: after it.
                let since = m
                    .incremental_input
                    .as_ref()
                    .map(|input| (crate::boundary::since_name(input, &m.name), i));
                std::iter::once((m.name.clone(), i))
                    .chain(companion)
                    .chain(since)
            })
            .collect();
        let upstream: Vec<BTreeSet<usize>> = pipeline
            .models
            .iter()
            .map(|m| {
                m.sql
                    .reads
                    .iter()
                    .filter_map(|read| index.get(read.table.as_str()).copied())
                    .collect()
            })
            .collect();
        for (i, model) in pipeline.models.iter().enumerate() {
            if upstream[i].contains(&i) {
                return Err(model.error(Some("sql"), "the model reads its own output"));
            }
        }
        // Kahn's algorithm; the ready set is ordered by model name.
        let mut waiting: Vec<usize> = upstream.iter().map(BTreeSet::len).collect();
        let mut ready: BTreeSet<(&str, usize)> = (0..pipeline.models.len())
            .filter(|&i| waiting[i] == 0)
            .map(|i| (pipeline.models[i].name.as_str(), i))
            .collect();
        let mut order = Vec::with_capacity(pipeline.models.len());
        while let Some(next) = ready.pop_first() {
            let done = next.1;
            order.push(done);
            for (i, ups) in upstream.iter().enumerate() {
                if ups.contains(&done) {
                    waiting[i] -= 1;
                    if waiting[i] == 0 {
                        ready.insert((pipeline.models[i].name.as_str(), i));
                    }
                }
            }
        }
        if order.len() < pipeline.models.len() {
            let stuck: Vec<usize> = (0..pipeline.models.len())
                .filter(|i| !order.contains(i))
                .collect();
            let cycle = find_cycle(&upstream, &stuck);
            let first = &pipeline.models[cycle[0]];
            let path: Vec<String> = cycle
                .iter()
                .chain(std::iter::once(&cycle[0]))
                .map(|&i| {
                    let m = &pipeline.models[i];
                    format!("{} ({})", m.name, m.sql.file.display())
                })
                .collect();
            return Err(first.error(
                Some("sql"),
                format!("a dependency cycle: {}", path.join(" reads ")),
            ));
        }
        Ok(Self { order, upstream })
    }

    /// The models (indexes) that `selectors` pick, in run order; all when empty.
    pub fn select(&self, pipeline: &Pipeline, selectors: &[String]) -> Result<Vec<usize>, String> {
        if selectors.is_empty() {
            return Ok(self.order.clone());
        }
        let mut chosen = BTreeSet::new();
        for selector in selectors {
            let up = selector.starts_with('+');
            let down = selector.ends_with('+') && selector.len() > 1;
            let name = selector.trim_matches('+');
            let Some(root) = pipeline.models.iter().position(|m| m.name == name) else {
                let known: Vec<&str> = pipeline.models.iter().map(|m| m.name.as_str()).collect();
                return Err(format!(
                    "--select {selector}: no model {name} in pipeline {} (models: {})",
                    pipeline.name,
                    known.join(", ")
                ));
            };
            chosen.insert(root);
            if up {
                self.walk(root, &mut chosen, |i| {
                    self.upstream[i].iter().copied().collect()
                });
            }
            if down {
                self.walk(root, &mut chosen, |i| {
                    (0..self.upstream.len())
                        .filter(|&j| self.upstream[j].contains(&i))
                        .collect()
                });
            }
        }
        Ok(self
            .order
            .iter()
            .copied()
            .filter(|i| chosen.contains(i))
            .collect())
    }

    fn walk(&self, root: usize, into: &mut BTreeSet<usize>, next: impl Fn(usize) -> Vec<usize>) {
        let mut stack = vec![root];
        while let Some(i) = stack.pop() {
            for j in next(i) {
                if into.insert(j) {
                    stack.push(j);
                }
            }
        }
    }
}

/// One cycle among `stuck` models (each of which has an unfinished upstream).
fn find_cycle(upstream: &[BTreeSet<usize>], stuck: &[usize]) -> Vec<usize> {
    let mut path = vec![stuck[0]];
    loop {
        let last = *path.last().unwrap_or(&stuck[0]);
        let Some(&next) = upstream[last].iter().find(|i| stuck.contains(i)) else {
            return path;
        };
        if let Some(start) = path.iter().position(|&i| i == next) {
            let mut cycle = path.split_off(start);
            cycle.reverse();
            return cycle;
        }
        path.push(next);
    }
}

/// Model names for messages.
pub fn names<'a>(pipeline: &'a Pipeline, indexes: &[usize]) -> Vec<&'a str> {
    indexes
        .iter()
        .map(|&i| pipeline.models[i].name.as_str())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pipeline(models: &[(&str, &str)]) -> (tempfile::TempDir, Pipeline) {
        let dir = tempfile::tempdir().unwrap();
        let mut toml = String::from("name = \"g\"\n");
        for (name, sql) in models {
            let file = name.replace('.', "_");
            toml.push_str(&format!(
                "[[models]]\nname = \"{name}\"\nkind = \"table\"\nsql = \"{file}.sql\"\n"
            ));
            std::fs::write(dir.path().join(format!("{file}.sql")), sql).unwrap();
        }
        std::fs::write(dir.path().join("pipeline.toml"), toml).unwrap();
        let p = Pipeline::load(dir.path()).unwrap();
        (dir, p)
    }

    #[test]
    fn models_run_after_what_they_read_and_selection_walks_the_graph() {
        let (_dir, p) = pipeline(&[
            ("u.c", "SELECT * FROM h.b JOIN h.a USING (x)"),
            ("h.b", "SELECT * FROM h.a"),
            ("h.a", "SELECT * FROM raw.e"),
            ("u.d", "SELECT * FROM raw.e"),
        ]);
        let g = Graph::of(&p).unwrap();
        assert_eq!(names(&p, &g.order), vec!["h.a", "h.b", "u.c", "u.d"]);
        let pick = |s: &[&str]| {
            let s: Vec<String> = s.iter().map(|s| s.to_string()).collect();
            names(&p, &g.select(&p, &s).unwrap()).join(" ")
        };
        assert_eq!(pick(&["h.b"]), "h.b");
        assert_eq!(pick(&["h.b+"]), "h.b u.c");
        assert_eq!(pick(&["+h.b"]), "h.a h.b");
        assert_eq!(pick(&["h.a+", "u.d"]), "h.a h.b u.c u.d");
        assert!(g
            .select(&p, &["nope".into()])
            .unwrap_err()
            .contains("no model nope"));
    }

    #[test]
    fn a_cycle_names_its_models_and_files() {
        let (_dir, p) = pipeline(&[
            ("h.a", "SELECT * FROM h.c"),
            ("h.b", "SELECT * FROM h.a"),
            ("h.c", "SELECT * FROM h.b"),
            ("h.d", "SELECT * FROM raw.e"),
        ]);
        let e = Graph::of(&p).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("dependency cycle"), "{text}");
        for name in ["h.a (", "h.b (", "h.c (", "h_a.sql"] {
            assert!(text.contains(name), "{text}");
        }
        assert!(!text.contains("h.d"), "{text}");
    }
}
