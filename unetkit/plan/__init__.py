"""A plan from the data (nnU-Net's idea, for this network): what the training data measure, and the settings
derived from that, kept apart as nnU-Net keeps its fingerprint apart from its plans.

- :func:`fingerprint` ``(items) -> dict``: image sizes, spacing, intensity percentiles, object count, object
  diameter (median and spread), the share of objects that touch another, annotated frames.
- :func:`plan_settings` ``(fingerprint, *, network_margin, max_steps) -> dict``: config overrides (MONAI ids
  -> values) for a bundle's train configs: weight-map sigma scaled to the objects, the decoder's minimum
  object size, the training tile, the validation interval.
- :func:`plan_bundle` ``(bundle, data) -> Plan``: both, for the bundle's own training data list.
"""

from unetkit.plan.fingerprint import fingerprint
from unetkit.plan.settings import Plan, plan_bundle, plan_settings

__all__ = ["fingerprint", "plan_settings", "plan_bundle", "Plan"]
