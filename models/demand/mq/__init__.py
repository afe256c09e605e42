"""Multi-horizon quantile forecasters: MQ-CNN (Wen et al. 2017) and MQ-Transformer (Eisenach et al. 2020),
in PyTorch Lightning, trained with forking sequences. Architecture notes in networks.py, data layout in
data.py, the Forecaster wrappers in forecasters.py."""
from echelon.models.demand.mq.forecasters import MQCNNForecaster, MQForecaster, MQTransformerForecaster

__all__ = ["MQCNNForecaster", "MQForecaster", "MQTransformerForecaster"]
