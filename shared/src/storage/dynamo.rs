//! The DynamoDB adapter (`aws-sdk-dynamodb`). Its endpoint can be overridden for LocalStack
//! or moto. Single-operation writes use PutItem/UpdateItem/DeleteItem (half the cost of a
//! one-item transaction); anything larger is one TransactWriteItems call.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put, ReturnValue,
    ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, Update as DynamoUpdate,
};
use serde_json::Value;

use super::cursor::Position;
use super::retry::{RetryPolicy, TransactionToken, drain};
use super::schema::{self, TableNames};
use super::{
    CancelReason, Condition, Item, Key, Page, Query, SortKey, Store, StoreError, StoreResult,
    Table, Update, WriteOp, validate_transaction,
};

type Attrs = HashMap<String, AttributeValue>;

/// Where and how to reach DynamoDB.
#[derive(Clone, Debug, Default)]
pub struct DynamoSettings {
    /// Endpoint override (LocalStack, moto, DynamoDB Local). `None` means AWS.
    pub endpoint: Option<String>,
    /// Region override; otherwise the SDK's provider chain, then `us-east-1`.
    pub region: Option<String>,
    pub tables: TableNames,
}

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    tables: TableNames,
}

fn to_attrs(item: &Item) -> StoreResult<Attrs> {
    serde_dynamo::to_item(item).map_err(|e| StoreError::Internal(format!("to item: {e}")))
}

fn from_attrs(attrs: Attrs) -> StoreResult<Item> {
    serde_dynamo::from_item(attrs).map_err(|e| StoreError::Internal(format!("from item: {e}")))
}

fn to_attr(value: &Value) -> StoreResult<AttributeValue> {
    serde_dynamo::to_attribute_value(value)
        .map_err(|e| StoreError::Internal(format!("to attribute: {e}")))
}

fn key_attrs(key: &Key) -> Attrs {
    HashMap::from([
        (schema::PK.to_owned(), AttributeValue::S(key.pk.clone())),
        (schema::SK.to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

/// Maps an SDK error to the port's error kinds. Throttling, timeouts and dispatch failures
/// are `Unavailable` (retryable); a failed condition looks like a one-operation cancelled
/// transaction so callers handle single writes and transactions alike.
fn classify<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            return StoreError::Unavailable(format!("{err}"));
        }
        SdkError::ResponseError(_) => return StoreError::Unavailable(format!("{err:?}")),
        _ => {}
    }
    let code = err.code().unwrap_or("Unknown").to_owned();
    let message = err.message().unwrap_or_default().to_owned();
    match code.as_str() {
        "ConditionalCheckFailedException" => StoreError::TransactionCanceled {
            reasons: vec![CancelReason::ConditionalCheckFailed],
        },
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "TransactionInProgressException" => StoreError::Unavailable(format!("{code}: {message}")),
        "ValidationException" => StoreError::Invalid(message),
        _ => StoreError::Internal(format!("{code}: {message}")),
    }
}

/// Expression text with its placeholder maps.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: Attrs,
}

impl Expr {
    fn name(&mut self, placeholder: &str, attr: &str) -> String {
        let p = format!("#{placeholder}");
        self.names.insert(p.clone(), attr.to_owned());
        p
    }

    fn value(&mut self, placeholder: &str, v: AttributeValue) -> String {
        let p = format!(":{placeholder}");
        self.values.insert(p.clone(), v);
        p
    }

    fn condition(&mut self, c: &Condition) -> StoreResult<String> {
        Ok(match c {
            Condition::NotExists => {
                format!("attribute_not_exists({})", self.name("cpk", schema::PK))
            }
            Condition::Exists => format!("attribute_exists({})", self.name("cpk", schema::PK)),
            Condition::VersionEquals(v) => format!(
                "{} = {}",
                self.name("cver", schema::VERSION),
                self.value("cver", AttributeValue::N(v.to_string()))
            ),
            Condition::AttrEquals(attr, v) => {
                let v = to_attr(v)?;
                format!("{} = {}", self.name("ceq", attr), self.value("ceq", v))
            }
            Condition::ExistsWithout(attr) => format!(
                "attribute_exists({}) AND attribute_not_exists({})",
                self.name("cpk", schema::PK),
                self.name("cabs", attr)
            ),
        })
    }

    fn update(&mut self, u: &Update) -> StoreResult<String> {
        let mut clauses = Vec::new();
        if !u.set.is_empty() {
            let mut parts = Vec::new();
            for (i, (k, v)) in u.set.iter().enumerate() {
                let v = to_attr(v)?;
                parts.push(format!(
                    "{} = {}",
                    self.name(&format!("s{i}"), k),
                    self.value(&format!("s{i}"), v)
                ));
            }
            clauses.push(format!("SET {}", parts.join(", ")));
        }
        if !u.remove.is_empty() {
            let parts: Vec<String> = u
                .remove
                .iter()
                .enumerate()
                .map(|(i, k)| self.name(&format!("r{i}"), k))
                .collect();
            clauses.push(format!("REMOVE {}", parts.join(", ")));
        }
        if !u.add.is_empty() {
            let parts: Vec<String> = u
                .add
                .iter()
                .enumerate()
                .map(|(i, (k, by))| {
                    format!(
                        "{} {}",
                        self.name(&format!("a{i}"), k),
                        self.value(&format!("a{i}"), AttributeValue::N(by.to_string()))
                    )
                })
                .collect();
            clauses.push(format!("ADD {}", parts.join(", ")));
        }
        if clauses.is_empty() {
            return Err(StoreError::Invalid("empty update".into()));
        }
        Ok(clauses.join(" "))
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<Attrs> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

fn sort_expr(e: &mut Expr, attr: &str, sort: &SortKey) -> String {
    let n = e.name("sk", attr);
    let mut v = |p: &str, s: &str| e.value(p, AttributeValue::S(s.to_owned()));
    match sort {
        SortKey::Eq(s) => format!("{n} = {}", v("sk", s)),
        SortKey::BeginsWith(s) => format!("begins_with({n}, {})", v("sk", s)),
        SortKey::Between(a, b) => format!("{n} BETWEEN {} AND {}", v("sk", a), v("sk2", b)),
        SortKey::Lt(s) => format!("{n} < {}", v("sk", s)),
        SortKey::Le(s) => format!("{n} <= {}", v("sk", s)),
        SortKey::Gt(s) => format!("{n} > {}", v("sk", s)),
        SortKey::Ge(s) => format!("{n} >= {}", v("sk", s)),
    }
}

impl DynamoStore {
    pub async fn connect(settings: &DynamoSettings) -> Self {
        // One attempt per call: retries belong to `Retrying`, which keeps one budget per
        // request and one client request token per transaction across attempts (SDK retries
        // inside it would multiply attempts and overrun the budget). Against AWS a stuck
        // attempt is abandoned after 5 s and retried there. Local emulators (moto,
        // LocalStack) can be slower than that under load and do not deduplicate retries, so
        // they get time.
        let attempt = match settings.endpoint {
            Some(_) => Duration::from_secs(60),
            None => Duration::from_secs(5),
        };
        let sdk = crate::aws::load(&crate::aws::SdkOptions {
            region: settings.region.clone(),
            attempt_timeout: attempt,
            local_credentials: settings.endpoint.is_some(),
        })
        .await;
        let mut config = aws_sdk_dynamodb::config::Builder::from(&sdk);
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(config.build()),
            tables: settings.tables.clone(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn tables(&self) -> &TableNames {
        &self.tables
    }

    fn name(&self, table: Table) -> String {
        self.tables.name(table).to_owned()
    }

    /// Creates the tables (keys, GSIs, TTL) when they do not exist; for local and dev use.
    /// The definitions are the ones `infra/template.yaml` declares (checked by a test).
    pub async fn create_tables(&self) -> StoreResult<()> {
        for table in Table::ALL {
            let name = self.name(table);
            let mut attrs = vec![schema::PK, schema::SK];
            let mut gsis = Vec::new();
            for ix in table.indexes() {
                attrs.extend([ix.pk_attr(), ix.sk_attr()]);
                gsis.push(
                    GlobalSecondaryIndex::builder()
                        .index_name(ix.name())
                        .key_schema(key_element(ix.pk_attr(), KeyType::Hash))
                        .key_schema(key_element(ix.sk_attr(), KeyType::Range))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build()
                        .map_err(|e| StoreError::Internal(e.to_string()))?,
                );
            }
            let defs = attrs
                .into_iter()
                .map(|a| {
                    AttributeDefinition::builder()
                        .attribute_name(a)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(|e| StoreError::Internal(e.to_string()))
                })
                .collect::<StoreResult<Vec<_>>>()?;
            let created = self
                .client
                .create_table()
                .table_name(&name)
                .billing_mode(BillingMode::PayPerRequest)
                .set_attribute_definitions(Some(defs))
                .key_schema(key_element(schema::PK, KeyType::Hash))
                .key_schema(key_element(schema::SK, KeyType::Range))
                .set_global_secondary_indexes(Some(gsis))
                .send()
                .await;
            match created {
                Ok(_) => {}
                Err(e) if e.code() == Some("ResourceInUseException") => continue,
                Err(e) => return Err(classify(e)),
            }
            self.wait_active(&name).await?;
            self.client
                .update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(schema::TTL)
                        .build()
                        .map_err(|e| StoreError::Internal(e.to_string()))?,
                )
                .send()
                .await
                .map_err(classify)?;
        }
        Ok(())
    }

    async fn wait_active(&self, name: &str) -> StoreResult<()> {
        for _ in 0..120 {
            let d = self
                .client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .map_err(classify)?;
            let status = d.table().and_then(|t| t.table_status().cloned());
            if status == Some(aws_sdk_dynamodb::types::TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::Unavailable(format!("table {name} not active")))
    }

    fn transact_item(&self, op: &WriteOp) -> StoreResult<TransactWriteItem> {
        let mut e = Expr::default();
        let cond = op.condition().map(|c| e.condition(c)).transpose()?;
        let b = TransactWriteItem::builder();
        let built = match op {
            WriteOp::Put { table, item, .. } => b.put(
                Put::builder()
                    .table_name(self.name(*table))
                    .set_item(Some(to_attrs(item)?))
                    .set_condition_expression(cond)
                    .set_expression_attribute_names(e.names())
                    .set_expression_attribute_values(e.values())
                    .build()
                    .map_err(|e| StoreError::Internal(e.to_string()))?,
            ),
            WriteOp::Update {
                table, key, update, ..
            } => {
                let expr = e.update(update)?;
                b.update(
                    DynamoUpdate::builder()
                        .table_name(self.name(*table))
                        .set_key(Some(key_attrs(key)))
                        .update_expression(expr)
                        .set_condition_expression(cond)
                        .set_expression_attribute_names(e.names())
                        .set_expression_attribute_values(e.values())
                        .build()
                        .map_err(|e| StoreError::Internal(e.to_string()))?,
                )
            }
            WriteOp::Delete { table, key, .. } => b.delete(
                Delete::builder()
                    .table_name(self.name(*table))
                    .set_key(Some(key_attrs(key)))
                    .set_condition_expression(cond)
                    .set_expression_attribute_names(e.names())
                    .set_expression_attribute_values(e.values())
                    .build()
                    .map_err(|e| StoreError::Internal(e.to_string()))?,
            ),
            WriteOp::ConditionCheck { table, key, .. } => b.condition_check(
                ConditionCheck::builder()
                    .table_name(self.name(*table))
                    .set_key(Some(key_attrs(key)))
                    .set_condition_expression(cond)
                    .set_expression_attribute_names(e.names())
                    .set_expression_attribute_values(e.values())
                    .build()
                    .map_err(|e| StoreError::Internal(e.to_string()))?,
            ),
        };
        Ok(built.build())
    }

    /// One write without a transaction (PutItem/UpdateItem/DeleteItem).
    async fn single(&self, op: &WriteOp) -> StoreResult<()> {
        let mut e = Expr::default();
        let cond = op.condition().map(|c| e.condition(c)).transpose()?;
        match op {
            WriteOp::Put { table, item, .. } => {
                self.client
                    .put_item()
                    .table_name(self.name(*table))
                    .set_item(Some(to_attrs(item)?))
                    .set_condition_expression(cond)
                    .set_expression_attribute_names(e.names())
                    .set_expression_attribute_values(e.values())
                    .send()
                    .await
                    .map_err(classify)?;
            }
            WriteOp::Update {
                table, key, update, ..
            } => {
                let expr = e.update(update)?;
                self.client
                    .update_item()
                    .table_name(self.name(*table))
                    .set_key(Some(key_attrs(key)))
                    .update_expression(expr)
                    .set_condition_expression(cond)
                    .set_expression_attribute_names(e.names())
                    .set_expression_attribute_values(e.values())
                    .send()
                    .await
                    .map_err(classify)?;
            }
            WriteOp::Delete { table, key, .. } => {
                self.client
                    .delete_item()
                    .table_name(self.name(*table))
                    .set_key(Some(key_attrs(key)))
                    .set_condition_expression(cond)
                    .set_expression_attribute_names(e.names())
                    .set_expression_attribute_values(e.values())
                    .send()
                    .await
                    .map_err(classify)?;
            }
            WriteOp::ConditionCheck {
                table,
                key,
                condition,
            } => {
                // A lone check is a consistent read evaluated here.
                let item = self.get(*table, key).await?;
                if !condition.holds(item.as_ref()) {
                    return Err(StoreError::TransactionCanceled {
                        reasons: vec![CancelReason::ConditionalCheckFailed],
                    });
                }
            }
        }
        Ok(())
    }
}

fn key_element(attr: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(attr)
        .key_type(kind)
        .build()
        .expect("name and type are set")
}

fn cancel_reason(code: Option<&str>) -> CancelReason {
    match code {
        None | Some("None") => CancelReason::None,
        Some("ConditionalCheckFailed") => CancelReason::ConditionalCheckFailed,
        Some("TransactionConflict") => CancelReason::TransactionConflict,
        Some(other) => CancelReason::Other(other.to_owned()),
    }
}

impl DynamoStore {
    async fn transact_once(&self, items: Vec<TransactWriteItem>, n_ops: usize) -> StoreResult<()> {
        // Without a token the SDK makes one up per call, which protects nothing across the
        // retries of `Retrying`; with it DynamoDB applies a repeat at most once (10 minutes).
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .set_client_request_token(TransactionToken::current())
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(c)) =
            err.as_service_error()
        {
            let mut reasons: Vec<CancelReason> = c
                .cancellation_reasons()
                .iter()
                .map(|r| cancel_reason(r.code()))
                .collect();
            reasons.resize(n_ops, CancelReason::None);
            if reasons.contains(&CancelReason::ConditionalCheckFailed) {
                return Err(StoreError::TransactionCanceled { reasons });
            }
            if reasons.contains(&CancelReason::TransactionConflict) {
                // Retried by `Retrying` (see `StoreError::is_transient`).
                return Err(StoreError::TransactionCanceled { reasons });
            }
            return Err(StoreError::Unavailable(format!(
                "transaction cancelled: {}",
                c.message().unwrap_or_default()
            )));
        }
        Err(classify(err))
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, table: Table, key: &Key) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(self.name(table))
            .set_key(Some(key_attrs(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        out.item.map(from_attrs).transpose()
    }

    async fn batch_get(&self, table: Table, keys: &[Key]) -> StoreResult<Vec<Option<Item>>> {
        let name = self.name(table);
        let mut found: HashMap<Key, Item> = HashMap::new();
        let mut unique: Vec<Key> = keys.to_vec();
        unique.sort_by(|a, b| (&a.pk, &a.sk).cmp(&(&b.pk, &b.sk)));
        unique.dedup();
        for chunk in unique.chunks(100) {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(chunk.iter().map(key_attrs).collect()))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            // BatchGetItem may return part of the keys as unprocessed (throttled): ask again
            // for those, with backoff, within the request's deadline.
            let items = drain(&RetryPolicy::default(), request, |req| {
                let call = self
                    .client
                    .batch_get_item()
                    .request_items(name.clone(), req);
                let name = &name;
                async move {
                    let out = call.send().await.map_err(classify)?;
                    let items = out
                        .responses
                        .and_then(|mut r| r.remove(name))
                        .unwrap_or_default()
                        .into_iter()
                        .map(from_attrs)
                        .collect::<StoreResult<Vec<_>>>()?;
                    let rest = out
                        .unprocessed_keys
                        .and_then(|mut u| u.remove(name))
                        .filter(|k| !k.keys().is_empty());
                    Ok((items, rest))
                }
            })
            .await?;
            for item in items {
                if let Some(k) = Key::of(&item) {
                    found.insert(k, item);
                }
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn query(&self, q: &Query) -> StoreResult<Page> {
        let (pk_attr, sk_attr) = match q.index {
            Some(ix) => (ix.pk_attr(), ix.sk_attr()),
            None => (schema::PK, schema::SK),
        };
        let mut e = Expr::default();
        let mut key_cond = format!(
            "{} = {}",
            e.name("pk", pk_attr),
            e.value("pk", AttributeValue::S(q.pk.clone()))
        );
        if let Some(sort) = &q.sort {
            key_cond += " AND ";
            key_cond += &sort_expr(&mut e, sk_attr, sort);
        }
        let mut start: Option<Attrs> = match &q.cursor {
            Some(c) => {
                let pos = Position::decode(c, q.index, &q.pk)?;
                let mut k = key_attrs(&Key::new(pos.pk, pos.sk));
                if let (Some(ix), Some((ipk, isk))) = (q.index, pos.index_key) {
                    k.insert(ix.pk_attr().to_owned(), AttributeValue::S(ipk));
                    k.insert(ix.sk_attr().to_owned(), AttributeValue::S(isk));
                }
                Some(k)
            }
            None => None,
        };
        let limit = q.limit.max(1) as usize;
        let mut items = Vec::with_capacity(limit + 1);
        // Ask for one more than the page so `next_cursor` means "more items exist"; DynamoDB
        // may stop early at 1 MB, so continue until the page is full or the partition ends.
        loop {
            let out = self
                .client
                .query()
                .table_name(self.name(q.table))
                .set_index_name(q.index.map(|ix| ix.name().to_owned()))
                .key_condition_expression(&key_cond)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .scan_index_forward(q.forward)
                .limit((limit + 1 - items.len()) as i32)
                .set_exclusive_start_key(start.take())
                .set_consistent_read(q.index.is_none().then_some(true))
                .send()
                .await
                .map_err(classify)?;
            for attrs in out.items.unwrap_or_default() {
                items.push(from_attrs(attrs)?);
            }
            match out.last_evaluated_key {
                Some(lek) if items.len() <= limit => start = Some(lek),
                _ => break,
            }
        }
        Page::of(items, q)
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        validate_transaction(&ops)?;
        // A single write is half the cost as PutItem/UpdateItem/DeleteItem, but those take no
        // client request token: under a token (a retried logical transaction) only writes
        // that are harmless to repeat go that way, the rest is a one-item transaction.
        if ops.len() == 1 && (ops[0].is_replay_safe() || TransactionToken::current().is_none()) {
            return self.single(&ops[0]).await;
        }
        let items = ops
            .iter()
            .map(|op| self.transact_item(op))
            .collect::<StoreResult<Vec<_>>>()?;
        // Conflicts with concurrent transactions are retried by `Retrying`, with the token.
        self.transact_once(items, ops.len()).await
    }
    async fn increment(&self, table: Table, key: &Key, attr: &str, by: i64) -> StoreResult<i64> {
        if attr == schema::PK || attr == schema::SK {
            return Err(StoreError::Invalid(
                "cannot increment a key attribute".into(),
            ));
        }
        let out = self
            .client
            .update_item()
            .table_name(self.name(table))
            .set_key(Some(key_attrs(key)))
            .update_expression("ADD #a :by")
            .expression_attribute_names("#a", attr)
            .expression_attribute_values(":by", AttributeValue::N(by.to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(classify)?;
        match out.attributes.as_ref().and_then(|a| a.get(attr)) {
            Some(AttributeValue::N(n)) => n
                .parse()
                .map_err(|_| StoreError::Internal(format!("counter {attr} is not an integer"))),
            _ => Err(StoreError::Internal(format!("counter {attr} missing"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
    use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
    use serde_json::json;

    use super::*;
    use crate::storage::{RetryPolicy, Retrying};

    /// The `X-Amz-Target` operation and the `ClientRequestToken` of one request.
    type Request = (String, Option<String>);

    /// Captures every request put on the wire.
    #[derive(Clone, Debug, Default)]
    struct Sent(Arc<Mutex<Vec<Request>>>);

    impl Intercept for Sent {
        fn name(&self) -> &'static str {
            "sent"
        }

        fn read_before_transmit(
            &self,
            ctx: &BeforeTransmitInterceptorContextRef<'_>,
            _: &RuntimeComponents,
            _: &mut ConfigBag,
        ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
            let req = ctx.request();
            let target = req.headers().get("x-amz-target").unwrap_or("").to_owned();
            let body: Value = serde_json::from_slice(req.body().bytes().unwrap_or(b"{}"))?;
            let token = body["ClientRequestToken"].as_str().map(str::to_owned);
            self.0.lock().unwrap().push((target, token));
            Ok(())
        }
    }

    /// A store whose every call fails to connect (nothing listens on port 1).
    fn unreachable_store(sent: &Sent) -> DynamoStore {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .http_client(crate::aws::https_client())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "k", "s", None, None, "test",
            ))
            .endpoint_url("http://127.0.0.1:1")
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .interceptor(sent.clone())
            .build();
        DynamoStore {
            client: Client::from_conf(config),
            tables: TableNames::default(),
        }
    }

    fn put_new(sk: &str) -> WriteOp {
        WriteOp::put_new(
            Table::Main,
            json!({"pk": "P", "sk": sk}).as_object().unwrap().clone(),
        )
    }

    #[tokio::test]
    async fn every_attempt_of_a_transaction_sends_the_same_client_request_token() {
        let sent = Sent::default();
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_attempts: 3,
            request_budget: Duration::from_secs(10),
        };
        let store = Retrying::new(unreachable_store(&sent), policy);
        for _ in 0..2 {
            let err = store
                .transact(vec![put_new("A"), put_new("B")])
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        }
        // A lone conditional write is a one-item transaction under a token; a lone
        // unconditional one stays a PutItem.
        let _ = store.transact(vec![put_new("C")]).await;
        let plain = WriteOp::put(
            Table::Main,
            json!({"pk": "P", "sk": "D"}).as_object().unwrap().clone(),
        );
        let _ = store.transact(vec![plain]).await;

        let sent = sent.0.lock().unwrap().clone();
        assert_eq!(sent.len(), 12, "3 attempts each, no SDK retries: {sent:?}");
        let (transactions, puts) = sent.split_at(9);
        assert!(
            transactions
                .iter()
                .all(|(op, t)| op.ends_with("TransactWriteItems") && t.is_some())
        );
        let tokens: Vec<&Option<String>> = transactions.iter().map(|(_, t)| t).collect();
        for attempts in tokens.chunks(3) {
            assert!(attempts.iter().all(|t| *t == attempts[0]), "{attempts:?}");
        }
        assert!(tokens[0] != tokens[3] && tokens[3] != tokens[6]);
        assert!(
            puts.iter()
                .all(|(op, t)| op.ends_with("PutItem") && t.is_none())
        );
    }
}
