//! The table definitions, in one place: the DynamoDB adapter creates tables from them, the
//! embedded adapter mirrors them, and a test checks `infra/template.yaml` against them.

/// Partition key attribute of every table.
pub const PK: &str = "pk";
/// Sort key attribute of every table.
pub const SK: &str = "sk";
/// Optimistic-concurrency attribute.
pub const VERSION: &str = "version";
/// Epoch seconds after which DynamoDB TTL may delete the item.
pub const TTL: &str = "ttl";

/// The logical tables. Physical names come from configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Everything but live WebSocket connections (single-table design).
    Main,
    /// Live WebSocket connections and their subscriptions.
    Connections,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::Main, Table::Connections];

    pub fn as_str(self) -> &'static str {
        match self {
            Table::Main => "main",
            Table::Connections => "connections",
        }
    }

    pub fn indexes(self) -> &'static [Index] {
        match self {
            Table::Main => &[Index::Gsi1, Index::Gsi2],
            Table::Connections => &[Index::Gsi1],
        }
    }
}

/// Global secondary indexes (overloaded: each entity decides what its gsi keys mean).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Index {
    Gsi1,
    Gsi2,
}

impl Index {
    pub fn name(self) -> &'static str {
        match self {
            Index::Gsi1 => "gsi1",
            Index::Gsi2 => "gsi2",
        }
    }

    pub fn pk_attr(self) -> &'static str {
        match self {
            Index::Gsi1 => "gsi1pk",
            Index::Gsi2 => "gsi2pk",
        }
    }

    pub fn sk_attr(self) -> &'static str {
        match self {
            Index::Gsi1 => "gsi1sk",
            Index::Gsi2 => "gsi2sk",
        }
    }
}

/// Physical table names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableNames {
    pub main: String,
    pub connections: String,
}

impl TableNames {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            main: format!("{prefix}main"),
            connections: format!("{prefix}connections"),
        }
    }

    pub fn name(&self, table: Table) -> &str {
        match table {
            Table::Main => &self.main,
            Table::Connections => &self.connections,
        }
    }
}

impl Default for TableNames {
    fn default() -> Self {
        Self {
            main: "momentum-main".into(),
            connections: "momentum-connections".into(),
        }
    }
}
