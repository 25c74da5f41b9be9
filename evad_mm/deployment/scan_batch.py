"""A dynamic batch axis for a graph traced at batch size 1.

The traced EVAD graph is shape-specialised: mmdet's Sparse R-CNN heads loop
over the images of a batch in Python, so the batch size becomes a constant.
:func:`scan_over_batch` wraps such a graph in ONNX's standard ``Scan``
operator: the original nodes become the body that runs on one clip, and
``Scan`` stacks the per-clip outputs, so the wrapped graph takes any
number of clips and gives each one exactly what the batch-1 graph gives.
"""
import copy

import onnx
from onnx import TensorProto, helper


def _with_batch_axis(value: onnx.ValueInfoProto, batch: str
                     ) -> onnx.ValueInfoProto:
    """``value`` (1, ...) as (batch, ...)."""
    tensor = value.type.tensor_type
    dims = [d.dim_value for d in tensor.shape.dim]
    return helper.make_tensor_value_info(value.name, tensor.elem_type,
                                         [batch] + dims[1:])


def _without_batch_axis(value: onnx.ValueInfoProto, name: str
                        ) -> onnx.ValueInfoProto:
    """``value`` (1, ...) as ``name`` (...)."""
    tensor = value.type.tensor_type
    dims = [d.dim_value for d in tensor.shape.dim]
    return helper.make_tensor_value_info(name, tensor.elem_type, dims[1:])


def scan_over_batch(model: onnx.ModelProto,
                    batch_name: str = 'batch') -> onnx.ModelProto:
    """Run a batch-1 graph once per clip of a batch of any size.

    Args:
        model (onnx.ModelProto): A graph whose inputs and outputs all have
            a leading axis of size 1.
        batch_name (str): Name of the new symbolic batch dimension.

    Returns:
        onnx.ModelProto: The same model (metadata, opsets) whose graph is a
        ``Scan`` over axis 0 of every input; the original initializers stay
        in the outer graph, which the body reads by name.
    """
    graph = model.graph
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if not dims or dims[0].dim_value != 1:
            raise ValueError(
                f'scan_over_batch needs a batch-1 graph; {value.name!r} has '
                f'shape {[d.dim_value or d.dim_param for d in dims]}.')
    # inside the body the original input and outputs get new names: the
    # outer graph keeps theirs (names are unique across scopes)
    renamed = {v.name: f'{v.name}_batch1'
               for v in list(graph.input) + list(graph.output)}
    body_nodes, body_inputs, body_outputs = [], [], []
    axes = helper.make_tensor('scan_batch_axis', TensorProto.INT64, [1], [0])
    body_nodes.append(
        helper.make_node('Constant', [], ['scan_batch_axis'], value=axes))
    for value in graph.input:
        clip = f'{value.name}_clip'
        body_inputs.append(_without_batch_axis(value, clip))
        body_nodes.append(
            helper.make_node('Unsqueeze', [clip, 'scan_batch_axis'],
                             [renamed[value.name]]))
    for node in graph.node:
        node = copy.deepcopy(node)
        for names in (node.input, node.output):
            for i, name in enumerate(names):
                names[i] = renamed.get(name, name)
        body_nodes.append(node)
    for value in graph.output:
        clip = f'{value.name}_clip'
        body_nodes.append(
            helper.make_node('Squeeze', [renamed[value.name], 'scan_batch_axis'],
                             [clip]))
        body_outputs.append(_without_batch_axis(value, clip))
    body = helper.make_graph(body_nodes, 'evad_one_clip', body_inputs,
                             body_outputs, value_info=graph.value_info)
    scan = helper.make_node(
        'Scan', [v.name for v in graph.input],
        [v.name for v in graph.output],
        body=body,
        num_scan_inputs=len(graph.input))
    outer = helper.make_graph(
        [scan], graph.name,
        [_with_batch_axis(v, batch_name) for v in graph.input],
        [_with_batch_axis(v, batch_name) for v in graph.output],
        initializer=graph.initializer)
    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    wrapped.graph.CopyFrom(outer)
    return wrapped
