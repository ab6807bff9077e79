"""Printing tables that stay readable in a narrow terminal (80 columns, or `kubectl exec` without a TTY).

A table that fits is printed as a table. One that would only fit by folding its cells into narrow columns (an id
split over four lines, a reason one word a line) is printed as one block per row instead: the first column as
the block's heading, then ``column: value`` lines that are never wrapped by us (the terminal may fold a long
value, but copying it gives it back whole).
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` as it is when its natural width fits the console, else as one block per row."""
    unbounded = console.options.update(max_width=1_000_000)
    if console.measure(table, options=unbounded).maximum <= console.width:
        console.print(table)
        return
    print_records(console, table)


def print_records(console: Console, table: Table) -> None:
    """Print a table's rows as blocks: ``- first cell`` then ``  header: cell`` for every other column."""
    headers = [str(column.header) for column in table.columns]
    columns = [[str(cell) for cell in column.cells] for column in table.columns]
    if table.title:
        console.print(str(table.title), style="bold", soft_wrap=True, markup=False, highlight=False)
    for row in zip(*columns, strict=True):
        console.print(f"- {headers[0]}: {row[0]}", soft_wrap=True, markup=False, highlight=False)
        for header, cell in zip(headers[1:], row[1:], strict=True):
            console.print(f"    {header}: {cell}", soft_wrap=True, markup=False, highlight=False)
