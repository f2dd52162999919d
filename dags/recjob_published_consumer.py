"""An example downstream DAG: it runs whenever recjob's DAG has published new recommendations (the publish task
updates the Airflow Assets of the published tables), and queries them by name, as an analyst's job would.

It needs recjob where Airflow runs (for the asset names and the query command) and the same environment variables
as recjob's DAG (RECJOB_CONF, RECJOB_BIN; see dags/recjob_amazon_movies.py).
"""
from __future__ import annotations

import os
import shlex
from datetime import datetime
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Asset

from recjob.config import ConfigError, load
from recjob.names import Table, asset_uri

HOME = Path(os.environ.get("RECJOB_HOME", Path(__file__).resolve().parents[1]))
CONF = os.environ.get("RECJOB_CONF", str(HOME / "conf" / "local.yaml"))
BIN = os.environ.get("RECJOB_BIN", "")
try:
    DATABASE = load(CONF, resolve_env=False).database
except ConfigError:
    DATABASE = "recjob"
RECJOB = str(Path(BIN) / "recjob") if BIN else "recjob"
QUERY = (f"SELECT ds, count(*) AS recommendations, count(DISTINCT reviewerID) AS users "
         f"FROM {DATABASE}.{Table.RECOMMENDATIONS} GROUP BY ds ORDER BY ds DESC LIMIT 1")

with DAG(
    dag_id="recjob_published_consumer",
    description="Runs when recjob publishes recommendations; queries the newest partition by name",
    schedule=[Asset(asset_uri(DATABASE, Table.RECOMMENDATIONS))],
    start_date=datetime(2026, 1, 4),
    catchup=False,
    max_active_runs=1,
    tags=["recjob", "example"],
) as dag:
    BashOperator(
        task_id="newest_recommendations",
        bash_command=f"{shlex.quote(RECJOB)} sql --conf {shlex.quote(CONF)} {shlex.quote(QUERY)}",
        env={**({"PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"} if BIN else {})},
        append_env=True,
    )
