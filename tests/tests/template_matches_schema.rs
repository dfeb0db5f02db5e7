//! The SAM template, the code's table definitions and docs/data-model.md must agree: same
//! keys, GSIs and TTL attribute. A drift here would mean `--create-tables` (local/dev) and
//! the deployed stack store data differently.

use std::collections::BTreeSet;

use momentum_shared::storage::schema::{self, Table};
use serde_json::Value;

fn repo_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn template() -> Value {
    serde_norway::from_str(&repo_file("infra/template.yaml")).expect("template parses")
}

fn resource_of(table: Table) -> &'static str {
    match table {
        Table::Main => "MainTable",
        Table::Connections => "ConnectionsTable",
    }
}

fn key_schema(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("KeySchema list")
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap().to_owned(),
                k["KeyType"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn template_tables_match_code_definitions() {
    let t = template();
    for table in Table::ALL {
        let name = resource_of(table);
        let res = &t["Resources"][name];
        assert_eq!(res["Type"], "AWS::DynamoDB::Table", "{name}");
        let p = &res["Properties"];
        assert_eq!(p["BillingMode"], "PAY_PER_REQUEST", "{name}");
        assert_eq!(
            key_schema(&p["KeySchema"]),
            vec![
                (schema::PK.to_owned(), "HASH".to_owned()),
                (schema::SK.to_owned(), "RANGE".to_owned())
            ],
            "{name} key schema"
        );
        assert_eq!(p["TimeToLiveSpecification"]["AttributeName"], schema::TTL);
        assert_eq!(p["TimeToLiveSpecification"]["Enabled"], true);
        assert_eq!(
            p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
            true
        );

        let gsis = p["GlobalSecondaryIndexes"].as_array().expect("GSIs");
        let declared: BTreeSet<(String, String, String)> = gsis
            .iter()
            .map(|g| {
                assert_eq!(g["Projection"]["ProjectionType"], "ALL");
                let ks = key_schema(&g["KeySchema"]);
                assert_eq!(ks[0].1, "HASH");
                assert_eq!(ks[1].1, "RANGE");
                (
                    g["IndexName"].as_str().unwrap().to_owned(),
                    ks[0].0.clone(),
                    ks[1].0.clone(),
                )
            })
            .collect();
        let in_code: BTreeSet<(String, String, String)> = table
            .indexes()
            .iter()
            .map(|ix| {
                (
                    ix.name().to_owned(),
                    ix.pk_attr().to_owned(),
                    ix.sk_attr().to_owned(),
                )
            })
            .collect();
        assert_eq!(declared, in_code, "{name} GSIs");

        // Exactly the key attributes are defined, all strings.
        let defs: BTreeSet<String> = p["AttributeDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                assert_eq!(d["AttributeType"], "S");
                d["AttributeName"].as_str().unwrap().to_owned()
            })
            .collect();
        let mut expected: BTreeSet<String> = [schema::PK, schema::SK].map(String::from).into();
        for ix in table.indexes() {
            expected.insert(ix.pk_attr().into());
            expected.insert(ix.sk_attr().into());
        }
        assert_eq!(defs, expected, "{name} attribute definitions");
    }
}

#[test]
fn data_model_doc_lists_every_table_and_index() {
    let doc = repo_file("docs/data-model.md");
    for table in Table::ALL {
        for ix in table.indexes() {
            let row = format!(
                "| {} | `{}` | `{}` (S) | `{}` (S) |",
                table.as_str(),
                ix.name(),
                ix.pk_attr(),
                ix.sk_attr()
            );
            assert!(
                doc.contains(&row),
                "docs/data-model.md lacks the row: {row}"
            );
        }
    }
    assert!(doc.contains(&format!("`{}` (epoch seconds)", schema::TTL)));
}
