// CoreMLVision.swift - classify blood-cell images in an iOS/macOS app with an edgeblood Core ML model.
//
// Add runs/<name>/export/model.mlpackage to the Xcode target (Xcode compiles it to .mlmodelc), then:
//
//     let classifier = try CellClassifier(modelURL: Bundle.main.url(forResource: "model", withExtension: "mlmodelc")!)
//     let result = try classifier.classify(cgImage)            // Vision: any size, center-cropped and scaled
//     print(result.label, result.probability, result.needsReview)
//
// The model's contract (written by `edgeblood export --target coreml`, checked against this file by
// tests/test_examples.py): one image input "image" (RGB, the model's size, pixels 0-255 - the
// normalisation is inside the model, so the app adds no scaling), outputs "classLabel" (String) and
// "probabilities" ([String: Double] over the 8 cell types). Class names and input size are also in the
// model's creator-defined metadata ("classes" as a JSON list, "input_size").
//
// Vision's .centerCrop takes the central square of the image and scales it to the input size - the
// same recipe as BloodMNIST and `edgeblood predict` (its resampling filter differs slightly from PIL's
// bilinear, so probabilities can differ in the last digits).

import CoreGraphics
import CoreML
import Foundation
import Vision

/// Feature names fixed by `edgeblood export --target coreml`.
enum EdgebloodCoreML {
    static let inputName = "image"
    static let labelOutput = "classLabel"
    static let probabilitiesOutput = "probabilities"
    static let classesKey = "classes"
    static let inputSizeKey = "input_size"
}

struct CellPrediction {
    let label: String
    let probability: Double
    let topK: [(label: String, probability: Double)]
    /// True when the top probability is below the review threshold: send this cell to a person.
    let needsReview: Bool
}

enum CellClassifierError: Error {
    case noResult
}

final class CellClassifier {
    let model: MLModel
    let classes: [String]
    let inputSize: Int
    let rejectBelow: Double
    private let visionModel: VNCoreMLModel

    /// `modelURL`: a compiled .mlmodelc (from the app bundle) or an .mlpackage (compiled here on first use).
    init(modelURL: URL, rejectBelow: Double = 0.7, computeUnits: MLComputeUnits = .all) throws {
        let compiledURL = modelURL.pathExtension == "mlmodelc" ? modelURL : try MLModel.compileModel(at: modelURL)
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits
        model = try MLModel(contentsOf: compiledURL, configuration: configuration)
        visionModel = try VNCoreMLModel(for: model)
        self.rejectBelow = rejectBelow

        let metadata = model.modelDescription.metadata[.creatorDefinedKey] as? [String: String] ?? [:]
        if let json = metadata[EdgebloodCoreML.classesKey]?.data(using: .utf8),
           let names = try? JSONDecoder().decode([String].self, from: json) {
            classes = names
        } else {
            classes = model.modelDescription.classLabels as? [String] ?? []
        }
        inputSize = Int(metadata[EdgebloodCoreML.inputSizeKey] ?? "") ?? 0
    }

    /// Vision + Core ML: any image size; Vision center-crops to a square and scales to the model's input.
    func classify(_ image: CGImage, orientation: CGImagePropertyOrientation = .up, topK: Int = 3) throws -> CellPrediction {
        let request = VNCoreMLRequest(model: visionModel)
        request.imageCropAndScaleOption = .centerCrop
        let handler = VNImageRequestHandler(cgImage: image, orientation: orientation, options: [:])
        try handler.perform([request])
        // A classifier model yields VNClassificationObservation results, most confident first.
        guard let observations = request.results as? [VNClassificationObservation], let best = observations.first else {
            throw CellClassifierError.noResult
        }
        let top = observations.prefix(topK).map { (label: $0.identifier, probability: Double($0.confidence)) }
        return CellPrediction(label: best.identifier, probability: Double(best.confidence), topK: Array(top),
                              needsReview: Double(best.confidence) < rejectBelow)
    }

    /// Core ML alone (no Vision): the same crop and scale through MLFeatureValue, outputs read by name.
    func classifyWithoutVision(_ image: CGImage, topK: Int = 3) throws -> CellPrediction {
        guard let constraint = model.modelDescription.inputDescriptionsByName[EdgebloodCoreML.inputName]?.imageConstraint else {
            throw CellClassifierError.noResult
        }
        let pixels = try MLFeatureValue(cgImage: image, constraint: constraint,
                                        options: [.cropAndScale: VNImageCropAndScaleOption.centerCrop.rawValue])
        let input = try MLDictionaryFeatureProvider(dictionary: [EdgebloodCoreML.inputName: pixels])
        let output = try model.prediction(from: input)
        guard let label = output.featureValue(for: EdgebloodCoreML.labelOutput)?.stringValue,
              let dictionary = output.featureValue(for: EdgebloodCoreML.probabilitiesOutput)?.dictionaryValue else {
            throw CellClassifierError.noResult
        }
        let ranked = dictionary
            .compactMap { key, value in (key.base as? String).map { (label: $0, probability: value.doubleValue) } }
            .sorted { $0.probability > $1.probability }
        let probability = ranked.first?.probability ?? 0
        return CellPrediction(label: label, probability: probability, topK: Array(ranked.prefix(topK)),
                              needsReview: probability < rejectBelow)
    }
}
