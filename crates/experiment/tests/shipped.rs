//! The reports committed under `docs/experiments/` are what the shipped experiments produce
//! today (the simulator is deterministic, so they must match byte for byte). After a change
//! that moves them, regenerate with `UPDATE_REPORTS=1 cargo test -p kantai-experiment --test
//! shipped` and review the diff.

use std::path::Path;

use kantai_experiment::Experiment;

#[test]
fn committed_reports_match_the_shipped_experiments() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let update = std::env::var_os("UPDATE_REPORTS").is_some();
    for name in [
        "seed-demo",
        "faast-paper",
        "faast-paper-70",
        "faast-paper-100",
        "keep-alive",
        "keep-alive-policies",
    ] {
        let file = root.join(format!("examples/experiments/{name}.yaml"));
        let text = std::fs::read_to_string(&file).expect("experiment");
        let e = Experiment::parse(&text, name).expect("parses");
        let runs = e.run(&file, &root, None, &mut |_, _, _| {}).expect("runs");
        let page = e.page(&runs);
        let (md, charts) = page.markdown();
        let mut files = vec![
            ("report.md".to_owned(), md),
            ("report.html".to_owned(), page.html()),
            ("results.csv".to_owned(), e.csv(&runs)),
        ];
        files.extend(charts);
        let dir = root.join(format!("docs/experiments/{name}-sim"));
        for (f, content) in files {
            let path = dir.join(&f);
            if update {
                std::fs::create_dir_all(&dir).expect("dir");
                std::fs::write(&path, &content).expect("write");
                continue;
            }
            let committed = std::fs::read_to_string(&path)
                .unwrap_or_else(|_| panic!("{} is missing", path.display()));
            assert!(
                committed == content,
                "{} differs from what {name}.yaml produces now: regenerate with UPDATE_REPORTS=1 and review",
                path.display()
            );
        }
    }
}
