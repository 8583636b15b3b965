//! `latest_row`: a DataFusion aggregate that keeps, per group, the whole row with the greatest
//! ordering key, so that "the newest event per key" is one hash aggregation instead of a
//! window that sorts every event. Pure: values in, values out, no I/O.
//!
//! `latest_row(row, key)` takes the row as a struct column and its ordering key as a second
//! column (any type arrow's [`RowConverter`] orders; a struct compares field by field), both
//! compared ascending with a null smallest. The result is the `row` of the greatest `key` per
//! group; on a tie the row seen first is kept (callers make the key total, see
//! [`crate::silver`]).
//!
//! # How it stays cheap
//!
//! The accumulator never copies a row while it scans: it keeps the input struct arrays that
//! hold some group's current winner, with their keys encoded once per batch in arrow's row
//! format (comparing two keys is a byte comparison; the key columns themselves are not
//! kept), and per group the (batch, row) of its winner. When the held arrays reach twice
//! the number of groups (plus a slack), it gathers the winners into one array and drops the
//! rest, so memory is about two rows per group and each input row is copied at most about
//! once. [`GroupsAccumulator::size`] reports what it holds, which lets DataFusion's
//! aggregation spill under its memory pool. The intermediate state is the winning row and
//! its encoded key (binary), so merging partial or spilled states is the same choice again
//! without re-encoding keys.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, StructArray, new_empty_array,
    new_null_array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, Expr, GroupsAccumulator, Signature,
    Volatility,
};

/// Name of the aggregate in plans.
pub const LATEST_ROW: &str = "firn_latest_row";

/// Rows held beyond twice the groups before the winners are gathered: small inputs are
/// never compacted, and compaction of few groups does not run on every batch.
const COMPACT_SLACK_ROWS: usize = 64 * 1024;

/// `latest_row(row, key)`: per group, the struct `row` whose `key` is greatest.
pub fn latest_row(row: Expr, key: Expr) -> Expr {
    AggregateUDF::from(LatestRow::new()).call(vec![row, key])
}

/// The aggregate; see the module docs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LatestRow {
    signature: Signature,
}

impl Default for LatestRow {
    fn default() -> Self {
        Self::new()
    }
}

impl LatestRow {
    pub fn new() -> Self {
        LatestRow {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }

    /// The row's fields and the key's type, from the argument types.
    fn layout(arg_types: &[DataType]) -> Result<(Fields, DataType)> {
        let [row, key] = arg_types else {
            return plan_err!("{LATEST_ROW} takes two arguments: the row and its key");
        };
        let DataType::Struct(fields) = row else {
            return plan_err!("{LATEST_ROW} takes the row as a struct, not {row}");
        };
        if !RowConverter::supports_fields(&[SortField::new(key.clone())]) {
            return plan_err!("{LATEST_ROW} cannot order keys of type {key}");
        }
        Ok((fields.clone(), key.clone()))
    }

    fn rows(args: &AccumulatorArgs) -> Result<LatestRows> {
        let types: Vec<DataType> = args
            .expr_fields
            .iter()
            .map(|field| field.data_type().clone())
            .collect();
        let (fields, key) = Self::layout(&types)?;
        LatestRows::try_new(fields, key)
    }
}

impl AggregateUDFImpl for LatestRow {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        LATEST_ROW
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let (fields, _) = Self::layout(arg_types)?;
        Ok(DataType::Struct(fields))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(
                args.return_field
                    .as_ref()
                    .clone()
                    .with_name(format_state_name(args.name, "row")),
            ),
            Arc::new(Field::new(
                format_state_name(args.name, "key"),
                DataType::Binary,
                false,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(OneGroup(Self::rows(&args)?)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Self::rows(&args)?))
    }
}

/// No group has a winner yet.
const NONE: (u32, u32) = (u32::MAX, u32::MAX);

/// An input array that holds some group's winner, with its rows' encoded keys.
struct Held {
    row: StructArray,
    keys: Rows,
}

/// The per-group state of [`LatestRow`]: see "How it stays cheap" in the module docs.
pub struct LatestRows {
    fields: Fields,
    converter: RowConverter,
    /// The encoded key of a group without a winner (a null key), to keep states dense.
    null_key: Rows,
    held: Vec<Held>,
    held_rows: usize,
    held_bytes: usize,
    /// Per group: (index in `held`, row in it) of its winner, or [`NONE`].
    winners: Vec<(u32, u32)>,
    /// Rows held beyond twice the groups before compacting ([`COMPACT_SLACK_ROWS`]).
    slack: usize,
}

impl LatestRows {
    fn try_new(fields: Fields, key: DataType) -> Result<Self> {
        let converter = RowConverter::new(vec![SortField::new(key.clone())])?;
        let null_key = converter.convert_columns(&[new_null_array(&key, 1)])?;
        Ok(LatestRows {
            fields,
            converter,
            null_key,
            held: Vec::new(),
            held_rows: 0,
            held_bytes: 0,
            winners: Vec::new(),
            slack: COMPACT_SLACK_ROWS,
        })
    }

    /// Input rows: `[row, key]`.
    fn update(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let [row, key] = values else {
            return exec_err!("{LATEST_ROW} takes two arguments");
        };
        let keys = self.converter.convert_columns(std::slice::from_ref(key))?;
        self.choose(
            row.as_struct().clone(),
            keys,
            group_indices,
            filter,
            total_num_groups,
        )
    }

    /// States: `[row, encoded key]`.
    fn merge(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let [row, key] = values else {
            return exec_err!("{LATEST_ROW} state has two columns");
        };
        let Some(key) = key.as_binary_opt::<i32>() else {
            return exec_err!("{LATEST_ROW} state key is {}, not binary", key.data_type());
        };
        if key.null_count() > 0 {
            return exec_err!("{LATEST_ROW} state key has nulls");
        }
        let keys = self.converter.from_binary(key.clone());
        self.choose(
            row.as_struct().clone(),
            keys,
            group_indices,
            filter,
            total_num_groups,
        )
    }

    fn choose(
        &mut self,
        row: StructArray,
        keys: Rows,
        group_indices: &[usize],
        filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        if self.winners.len() < total_num_groups {
            self.winners.resize(total_num_groups, NONE);
        }
        let Ok(batch) = u32::try_from(self.held.len()) else {
            return exec_err!("{LATEST_ROW}: too many held batches");
        };
        let mut used = false;
        for (index, &group) in group_indices.iter().enumerate() {
            if row.is_null(index) || filter.is_some_and(|f| !f.is_valid(index) || !f.value(index)) {
                continue;
            }
            let key = keys.row(index);
            let wins = match self.winners[group] {
                NONE => true,
                (b, r) if b == batch => key > keys.row(r as usize),
                (b, r) => key > self.held[b as usize].keys.row(r as usize),
            };
            if wins {
                // Batches come from DataFusion and are far below u32::MAX rows.
                self.winners[group] = (batch, index as u32);
                used = true;
            }
        }
        if used {
            self.held_rows += row.len();
            self.held_bytes += row.get_array_memory_size() + keys.size();
            self.held.push(Held { row, keys });
        }
        if self.held.len() > 1 && self.held_rows > 2 * self.winners.len() + self.slack {
            self.compact()?;
        }
        Ok(())
    }

    /// Gathers the winners of `groups` (in group order; [`NONE`] gives a null row and the
    /// null key).
    fn gather(&self, groups: &[(u32, u32)]) -> Result<(StructArray, Rows)> {
        if groups.is_empty() {
            let empty = new_empty_array(&DataType::Struct(self.fields.clone()));
            return Ok((empty.as_struct().clone(), self.converter.empty_rows(0, 0)));
        }
        let null_source = self.held.len();
        let missing = groups.iter().filter(|w| **w == NONE).count();
        let indices: Vec<(usize, usize)> = groups
            .iter()
            .map(|&(b, r)| match (b, r) {
                NONE => (null_source, 0),
                (b, r) => (b as usize, r as usize),
            })
            .collect();
        let columns = (0..self.fields.len())
            .map(|column| {
                let mut sources: Vec<ArrayRef> = self
                    .held
                    .iter()
                    .map(|held| held.row.column(column).clone())
                    .collect();
                if missing > 0 {
                    sources.push(new_null_array(self.fields[column].data_type(), 1));
                }
                let sources: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
                Ok(interleave(&sources, &indices)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let nulls = (missing > 0).then(|| NullBuffer::from_iter(groups.iter().map(|w| *w != NONE)));
        let row = StructArray::try_new(self.fields.clone(), columns, nulls)?;
        let key = |&(b, r): &(u32, u32)| match (b, r) {
            NONE => self.null_key.row(0),
            (b, r) => self.held[b as usize].keys.row(r as usize),
        };
        let data_bytes: usize = groups.iter().map(|w| key(w).data().len()).sum();
        let mut keys = self.converter.empty_rows(groups.len(), data_bytes);
        for winner in groups {
            keys.push(key(winner));
        }
        Ok((row, keys))
    }

    /// Replaces the held arrays by one holding only the winners.
    fn compact(&mut self) -> Result<()> {
        let (row, keys) = self.gather(&self.winners)?;
        self.held_rows = row.len();
        self.held_bytes = row.get_array_memory_size() + keys.size();
        self.held = vec![Held { row, keys }];
        for (index, winner) in self.winners.iter_mut().enumerate() {
            if *winner != NONE {
                *winner = (0, index as u32);
            }
        }
        Ok(())
    }

    /// Removes and returns the winners of the groups `emit_to` names, with their keys.
    fn emit(&mut self, emit_to: EmitTo) -> Result<(StructArray, Rows)> {
        let emitted = emit_to.take_needed(&mut self.winners);
        let gathered = self.gather(&emitted)?;
        if self.winners.is_empty() {
            self.held.clear();
            self.held_rows = 0;
            self.held_bytes = 0;
        } else {
            // The remaining groups' winners stay; compaction drops the arrays only the
            // emitted groups used.
            self.compact()?;
        }
        Ok(gathered)
    }
}

/// The encoded keys as a binary column (the state's second column).
fn binary(keys: Rows) -> Result<ArrayRef> {
    let keys: BinaryArray = keys.try_into_binary()?;
    Ok(Arc::new(keys))
}

impl GroupsAccumulator for LatestRows {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.update(values, group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(Arc::new(self.emit(emit_to)?.0))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (row, keys) = self.emit(emit_to)?;
        Ok(vec![Arc::new(row), binary(keys)?])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.merge(values, group_indices, opt_filter, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let [row, key] = values else {
            return exec_err!("{LATEST_ROW} takes two arguments");
        };
        let keys = self.converter.convert_columns(std::slice::from_ref(key))?;
        let row = match opt_filter {
            None => row.clone(),
            Some(filter) => {
                // A filtered-out row becomes a null row, which every merge skips.
                let row = row.as_struct();
                let keep = NullBuffer::from_iter(
                    (0..row.len())
                        .map(|i| filter.is_valid(i) && filter.value(i) && row.is_valid(i)),
                );
                let (fields, columns, _) = row.clone().into_parts();
                Arc::new(StructArray::try_new(fields, columns, Some(keep))?)
            }
        };
        Ok(vec![row, binary(keys)?])
    }

    fn supports_convert_to_state(&self) -> bool {
        true
    }

    fn size(&self) -> usize {
        self.held_bytes
            + self.winners.capacity() * size_of::<(u32, u32)>()
            + self.held.capacity() * size_of::<Held>()
            + self.converter.size()
    }
}

/// [`LatestRows`] for a single group (an aggregate without GROUP BY).
struct OneGroup(LatestRows);

impl std::fmt::Debug for OneGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneGroup")
            .field("held_rows", &self.0.held_rows)
            .finish()
    }
}

impl OneGroup {
    fn winner(&self) -> Result<(StructArray, Rows)> {
        let winner = self.0.winners.first().copied().unwrap_or(NONE);
        self.0.gather(&[winner])
    }
}

impl Accumulator for OneGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = values.first().map_or(0, |v| v.len());
        self.0.update(values, &vec![0; rows], None, 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        ScalarValue::try_from_array(&self.winner()?.0, 0)
    }

    fn size(&self) -> usize {
        size_of_val(self) + GroupsAccumulator::size(&self.0)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (row, keys) = self.winner()?;
        Ok(vec![
            ScalarValue::try_from_array(&row, 0)?,
            ScalarValue::Binary(Some(keys.row(0).data().to_vec())),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states.first().map_or(0, |v| v.len());
        self.0.merge(states, &vec![0; rows], None, 1)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;
    use proptest::prelude::*;

    use super::*;

    /// One input row: group, ordering key (`k`, then `t`), payload.
    type Input = (usize, Option<i64>, u8, u16);

    fn fields() -> Fields {
        Fields::from(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("t", DataType::Utf8, false),
            Field::new("v", DataType::Utf8, false),
        ])
    }

    fn key_fields() -> Fields {
        Fields::from(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("t", DataType::Utf8, false),
        ])
    }

    fn rows(slack: usize) -> LatestRows {
        let (fields, key) =
            LatestRow::layout(&[DataType::Struct(fields()), DataType::Struct(key_fields())])
                .unwrap();
        let mut rows = LatestRows::try_new(fields, key).unwrap();
        rows.slack = slack;
        rows
    }

    /// The rows and their keys (`k`, `t`) as the aggregate's two arguments.
    fn batch(inputs: &[Input]) -> [ArrayRef; 2] {
        let k: ArrayRef = Arc::new(Int64Array::from_iter(inputs.iter().map(|i| i.1)));
        let t: ArrayRef = Arc::new(StringArray::from_iter_values(
            inputs.iter().map(|i| format!("t{}", i.2)),
        ));
        let v: ArrayRef = Arc::new(StringArray::from_iter_values(
            inputs.iter().map(|i| format!("v{}", i.3)),
        ));
        [
            Arc::new(StructArray::new(
                fields(),
                vec![k.clone(), t.clone(), v],
                None,
            )),
            Arc::new(StructArray::new(key_fields(), vec![k, t], None)),
        ]
    }

    /// The payloads of an emitted struct array, null for a group without rows.
    fn payloads(array: &ArrayRef) -> Vec<Option<String>> {
        let row = array.as_struct();
        let v = row.column(2).as_string::<i32>();
        (0..row.len())
            .map(|i| row.is_valid(i).then(|| v.value(i).to_string()))
            .collect()
    }

    /// The obvious answer: per group, the first row with the greatest (k, t), a null k
    /// smallest.
    fn naive(inputs: &[Input], groups: usize) -> Vec<Option<String>> {
        let mut best: Vec<Option<&Input>> = vec![None; groups];
        for input in inputs {
            let slot = &mut best[input.0];
            let key = |i: &Input| (i.1, format!("t{}", i.2));
            if slot.is_none_or(|b| key(input) > key(b)) {
                *slot = Some(input);
            }
        }
        best.into_iter()
            .map(|b| b.map(|i| format!("v{}", i.3)))
            .collect()
    }

    fn update(acc: &mut LatestRows, inputs: &[Input], shift: usize, groups: usize) {
        let indices: Vec<usize> = inputs.iter().map(|i| i.0 - shift).collect();
        acc.update_batch(&batch(inputs), &indices, None, groups - shift)
            .unwrap();
    }

    fn arb_inputs() -> impl Strategy<Value = (usize, Vec<Input>)> {
        (1usize..12).prop_flat_map(|groups| {
            let input = (
                0..groups,
                proptest::option::weighted(0.9, 0i64..4),
                0u8..3,
                any::<u16>(),
            );
            (Just(groups), proptest::collection::vec(input, 0..120))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any batching, with compaction after every batch or never, gives the first
        /// greatest row of every group.
        #[test]
        fn keeps_the_first_greatest_row_per_group(
            (groups, inputs) in arb_inputs(),
            batch_rows in 1usize..20,
            slack in prop_oneof![Just(0usize), Just(usize::MAX / 4)],
        ) {
            let mut acc = rows(slack);
            for chunk in inputs.chunks(batch_rows) {
                update(&mut acc, chunk, 0, groups);
                if slack == 0 {
                    // Memory stays at about two rows per group.
                    prop_assert!(acc.held_rows <= (2 * groups).max(batch_rows), "{}", acc.held_rows);
                }
            }
            acc.winners.resize(groups, NONE);
            let got = payloads(&acc.evaluate(EmitTo::All).unwrap());
            prop_assert_eq!(got, naive(&inputs, groups));
            prop_assert_eq!(acc.held_rows, 0, "evaluate(All) resets the state");
        }

        /// Two partial accumulators merged in order (as DataFusion's two-phase and
        /// spilled aggregation do) equal one over all rows, and so does emitting the
        /// first groups early and continuing with shifted group indices.
        #[test]
        fn merging_and_early_emission_change_nothing(
            (groups, inputs) in arb_inputs(),
            split in 0usize..120,
            emit in 0usize..12,
        ) {
            let split = split.min(inputs.len());
            let expected = naive(&inputs, groups);

            let mut first = rows(0);
            let mut second = rows(0);
            update(&mut first, &inputs[..split], 0, groups);
            update(&mut second, &inputs[split..], 0, groups);
            let mut merged = rows(0);
            let all: Vec<usize> = (0..groups).collect();
            for partial in [&mut first, &mut second] {
                let state = partial.state(EmitTo::All).unwrap();
                let mut indices = all.clone();
                indices.truncate(state[0].len());
                merged.merge_batch(&state, &indices, None, groups).unwrap();
            }
            prop_assert_eq!(payloads(&merged.evaluate(EmitTo::All).unwrap()), expected.clone());

            // Early emission: the first `emit` groups leave once their rows are in.
            let emit = emit.min(groups);
            let (early, late): (Vec<Input>, Vec<Input>) =
                inputs.iter().partition(|i| i.0 < emit);
            let mut acc = rows(0);
            update(&mut acc, &early, 0, groups);
            update(&mut acc, &late[..late.len() / 2], 0, groups);
            let mut got = payloads(&acc.evaluate(EmitTo::First(emit)).unwrap());
            update(&mut acc, &late[late.len() / 2..], emit, groups);
            acc.winners.resize(groups - emit, NONE);
            got.extend(payloads(&acc.evaluate(EmitTo::All).unwrap()));
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn filtered_rows_are_ignored_and_state_conversion_keeps_them_out() {
        let inputs: Vec<Input> = vec![(0, Some(1), 0, 1), (0, Some(9), 0, 2), (1, Some(5), 0, 3)];
        let keep = BooleanArray::from(vec![Some(true), Some(false), None]);
        let mut acc = rows(0);
        acc.update_batch(&batch(&inputs), &[0, 0, 1], Some(&keep), 2)
            .unwrap();
        let got = payloads(&acc.evaluate(EmitTo::All).unwrap());
        assert_eq!(got, vec![Some("v1".to_string()), None]);

        let state = acc.convert_to_state(&batch(&inputs), Some(&keep)).unwrap();
        let mut merged = rows(0);
        merged.merge_batch(&state, &[0, 0, 1], None, 2).unwrap();
        assert_eq!(payloads(&merged.evaluate(EmitTo::All).unwrap()), got);
    }

    #[test]
    fn the_row_must_be_a_struct_and_the_key_orderable() {
        let udf = LatestRow::new();
        let err = udf.return_type(&[DataType::Struct(fields())]).unwrap_err();
        assert!(err.to_string().contains("takes two arguments"), "{err}");
        let err = udf
            .return_type(&[DataType::Int64, DataType::Int64])
            .unwrap_err();
        assert!(err.to_string().contains("row as a struct"), "{err}");
        let row = DataType::Struct(fields());
        assert_eq!(
            udf.return_type(&[row.clone(), DataType::Struct(key_fields())])
                .unwrap(),
            row
        );
    }
}
